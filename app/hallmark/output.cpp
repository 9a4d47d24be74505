#include "output.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>

namespace hallmark::app {
namespace fs = std::filesystem;

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    fmt::print("{}\n", line);
  }
}

std::string date_or_never(Seconds t) {
  if (t == kNoExpiry) return "never";
  return to_iso8601(t).substr(0, 10);
}

std::string summary(const x509::Certificate& cert) {
  return fmt::format("{} ({}, until {})", cert.subject().to_string(), cert.public_key().info().describe(),
                     date_or_never(cert.not_after()));
}

Status write_output(const std::string& path, ByteView content) {
  if (path.empty() || path == "-") {
    std::fwrite(content.data(), 1, content.size(), stdout);
    return {};
  }
  return write_file_atomic(path, content, 0644);
}

Status print_home_tree(const PkiHome& home) {
  const auto cas = HM_TRY(home.list_cas());
  const auto profiles = HM_TRY(home.list_profiles());
  std::string profile_names;
  for (const auto& p : profiles) profile_names += (profile_names.empty() ? "" : " ") + p.name;

  fmt::print("{}\n", home.dir().string());
  fmt::print("├── hallmark.toml\n");
  if (home.config().key_passphrase.starts_with("file:secrets/")) {
    fmt::print("├── {}  (0600: the CA key passphrase)\n", home.config().key_passphrase.substr(5));
  }
  fmt::print("├── profiles/  {}\n", profile_names);

  std::map<std::string, std::vector<const CaRecord*>> children;
  for (const auto& ca : cas) children[ca.parent].push_back(&ca);
  std::function<void(const CaRecord&, const std::string&, bool)> print_ca =
      [&](const CaRecord& ca, const std::string& prefix, bool last) {
        const std::string key = ca.key_holder == KeyHolder::local
                                    ? "key.pem 0600"
                                    : fmt::format("key: {}", to_string(ca.key_holder));
        fmt::print("{}{}{}/  [{}] {}  ({})\n", prefix, last ? "└── " : "├── ", ca.name, ca.role,
                   summary(ca.certificate), key);
        const auto& kids = children[ca.name];
        for (std::size_t i = 0; i < kids.size(); ++i) {
          print_ca(*kids[i], prefix + (last ? "    " : "│   "), i + 1 == kids.size());
        }
      };
  fmt::print("├── ca/\n");
  const auto& roots = children[""];
  for (std::size_t i = 0; i < roots.size(); ++i) print_ca(*roots[i], "│   ", i + 1 == roots.size());

  const auto print_leaf = [&](const fs::path& rel, bool last) {
    auto certs = x509::Certificate::load((home.dir() / rel).string());
    if (!certs) return;
    fmt::print("{}{}  {}  (+ .key 0600)\n", last ? "└── " : "├── ", rel.string(), summary(*certs));
  };
  print_leaf(fs::path("tls") / "server.pem", false);
  print_leaf(fs::path("ocsp") / "idc.pem", true);
  return {};
}

}  // namespace hallmark::app
