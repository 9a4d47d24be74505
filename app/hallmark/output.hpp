#pragma once
// Terminal output shared by the commands: tables, trees, certificate summaries.
#include <string>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/x509/certificate.hpp"
#include "home.hpp"

namespace hallmark::app {

// Left-aligned columns separated by two spaces; the first row is the header.
void print_table(const std::vector<std::vector<std::string>>& rows);
// "2051-11-28" or "never" for the 802.1AR no-expiry instant.
[[nodiscard]] std::string date_or_never(Seconds t);
// One line: "CN=... (EC P-256, until 2051-11-28)".
[[nodiscard]] std::string summary(const x509::Certificate& cert);
// Writes to stdout when `path` is empty or "-", else atomically to the file (mode 0644).
[[nodiscard]] Status write_output(const std::string& path, ByteView content);
// The home as a tree: files, profiles, CAs under their parents.
[[nodiscard]] Status print_home_tree(const PkiHome& home);

}  // namespace hallmark::app
