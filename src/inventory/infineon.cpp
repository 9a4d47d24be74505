// Infineon OPTIGA Trust M reel bundles: <chipID>_<objectID>.pem files (CRLF), in a directory or in
// the .7z bundle ("an archive of archives": one inner .7z per object plus an encrypted keys archive).
// A bundle lists candidates: it can name chips scrapped in test, so nothing here says "mounted".
#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <memory>

#include "hallmark/crypto/digest.hpp"
#include "readers.hpp"

namespace hallmark::inventory::detail {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxPem = 64 << 10;
constexpr std::size_t kMaxInnerArchive = 256 << 20;

struct Chip {
  std::string chip_id;                                              // as spelled in the file name
  std::map<std::string, std::optional<x509::Certificate>> objects;  // "E0E0" -> certificate
  std::vector<std::string> problems;
};

struct Bundle {
  std::map<std::string, Chip> chips;  // canonical chip id -> chip
  std::vector<std::string> notes;
};

// "<chipID>_<objectID>.pem" with a hex chip id and an object id like E0E0.
bool split_name(std::string_view name, std::string& chip, std::string& object) {
  if (name.size() < 5) return false;
  std::string ext(name.substr(name.size() - 4));
  std::ranges::transform(ext, ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext != ".pem") return false;
  const std::string_view stem = name.substr(0, name.size() - 4);
  const auto us = stem.rfind('_');
  if (us == std::string_view::npos || us == 0) return false;
  const std::string_view c = stem.substr(0, us);
  const std::string_view o = stem.substr(us + 1);
  auto hex = [](std::string_view s) {
    return !s.empty() && std::ranges::all_of(s, [](unsigned char ch) { return std::isxdigit(ch); });
  };
  if (!hex(c) || o.size() != 4 || !hex(o)) return false;
  chip.assign(c);
  object.assign(o);
  std::ranges::transform(object, object.begin(), [](unsigned char ch) { return std::toupper(ch); });
  return true;
}

void add_pem(Bundle& bundle, std::string_view name, std::string_view text) {
  std::string chip_id;
  std::string object;
  if (!split_name(name, chip_id, object)) {
    bundle.notes.push_back("ignored " + std::string(name) + ": not <chipID>_<objectID>.pem");
    return;
  }
  Chip& chip = bundle.chips[canonical_unique_id(chip_id)];
  chip.chip_id = chip_id;
  if (chip.objects.contains(object)) {
    chip.problems.push_back("two " + object + " certificates in the bundle");
    return;
  }
  auto cert = x509::Certificate::parse_pem(text);
  if (!cert) {
    chip.problems.push_back(object + " is not a certificate: " + cert.error().detail);
    chip.objects[object] = std::nullopt;
    return;
  }
  chip.objects[object] = std::move(*cert);
}

std::string base_name(std::string_view path) {
  const auto slash = path.find_last_of("/\\");
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return std::ranges::equal(s.substr(s.size() - suffix.size()), suffix, [](unsigned char a, unsigned char b) {
    return std::tolower(a) == std::tolower(b);
  });
}

struct ArchiveCloser {
  void operator()(archive* a) const noexcept { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveCloser>;

ArchivePtr new_reader() {
  ArchivePtr a(archive_read_new());
  if (!a) throw std::bad_alloc();
  archive_read_support_format_all(a.get());
  archive_read_support_filter_all(a.get());
  return a;
}

Result<std::string> read_entry_data(archive* a, std::string_view name, std::size_t limit) {
  std::string data;
  std::array<char, 64 << 10> buffer{};
  for (;;) {
    const la_ssize_t n = archive_read_data(a, buffer.data(), buffer.size());
    if (n < 0) {
      return fail(Errc::invalid_input, "cannot read " + std::string(name) + ": " + archive_error_string(a));
    }
    if (n == 0) break;
    if (data.size() + static_cast<std::size_t>(n) > limit) {
      return fail(Errc::invalid_input, std::string(name) + " is too large");
    }
    data.append(buffer.data(), static_cast<std::size_t>(n));
  }
  return data;
}

// Walks one archive; inner .7z archives (the bundle's per-object archives) are read from memory.
Status walk_archive(archive* a, const std::string& label, Bundle& bundle, int depth) {
  archive_entry* e = nullptr;
  for (;;) {
    const int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return fail(Errc::invalid_input, label + ": not a readable archive: " + archive_error_string(a));
    }
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    const std::string name = base_name(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
    if (archive_entry_is_encrypted(e) != 0) {
      bundle.notes.push_back("skipped encrypted " + name + " (keys archive: not needed for the inventory)");
      continue;
    }
    if (ends_with_ci(name, ".7z") || ends_with_ci(name, ".zip") || ends_with_ci(name, ".tar")) {
      if (ends_with_ci(name, "_keys.7z")) {
        bundle.notes.push_back("skipped " + name + " (encrypted PBS and authorization keys)");
        continue;
      }
      if (depth > 0) {
        bundle.notes.push_back("ignored " + name + ": archive nested too deep");
        continue;
      }
      const std::string inner = HM_TRY(read_entry_data(a, name, kMaxInnerArchive));
      ArchivePtr ia = new_reader();
      if (archive_read_open_memory(ia.get(), inner.data(), inner.size()) != ARCHIVE_OK) {
        return fail(Errc::invalid_input,
                    name + ": not a readable archive: " + archive_error_string(ia.get()));
      }
      const Status inner_status = walk_archive(ia.get(), label + ":" + name, bundle, depth + 1);
      if (!inner_status) {
        // The bundle's keys archive is encrypted as a whole: note it, keep going.
        bundle.notes.push_back("skipped " + name + ": " + inner_status.error().detail);
      }
      continue;
    }
    if (!ends_with_ci(name, ".pem")) continue;  // README.txt and the like
    auto text = read_entry_data(a, name, kMaxPem);
    if (!text) {
      bundle.notes.push_back(text.error().detail);
      continue;
    }
    add_pem(bundle, name, *text);
  }
  return {};
}

std::string reel_from_name(const std::string& path) {
  std::string name = base_name(fs::path(path).lexically_normal().string());
  if (name.empty()) name = fs::path(path).parent_path().filename().string();
  if (ends_with_ci(name, ".7z")) name.resize(name.size() - 3);
  if (const auto us = name.find('_'); us != std::string::npos) return name.substr(0, us);  // reelID_GUID_vX.Y
  if (const auto r = name.rfind("reel-"); r != std::string::npos) return name.substr(r + 5);
  return name;
}

}  // namespace

Result<ManifestSummary> read_infineon_bundle(const std::string& path, const ManifestTrust& trust,
                                             const ReadOptions& options, const EntryCallback& on_entry) {
  Bundle bundle;
  ManifestSummary summary;
  summary.format = ManifestFormat::infineon;
  summary.signer = "none (Infineon bundles are not signed)";
  summary.reel = reel_from_name(path);
  crypto::Sha256 hasher;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    // The directory's digest: "<name>\n<sha256 of content>\n" for every regular file, in name order.
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    if (ec) return fail(Errc::invalid_input, "cannot list " + path + ": " + ec.message());
    std::ranges::sort(files);
    for (const auto& f : files) {
      const std::string name = f.filename().string();
      const Bytes data = HM_TRY(read_file(f.string()));
      crypto::Sha256 one;
      one.update(data);
      const std::string line = name + "\n" + to_hex(one.finish()) + "\n";
      hasher.update(as_bytes(line));
      if (ends_with_ci(name, ".pem")) {
        if (data.size() > kMaxPem) {
          bundle.notes.push_back("ignored " + name + ": too large for a certificate");
          continue;
        }
        add_pem(bundle, name, as_chars(data));
      }
    }
  } else {
    {
      std::unique_ptr<std::FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
      if (!f) return fail(Errc::invalid_input, "cannot open " + path);
      std::array<char, 1 << 16> buffer{};
      for (std::size_t n; (n = std::fread(buffer.data(), 1, buffer.size(), f.get())) > 0;) {
        hasher.update(ByteView(reinterpret_cast<const std::byte*>(buffer.data()), n));
      }
    }
    ArchivePtr a = new_reader();
    if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
      return fail(Errc::invalid_input, path + ": not a readable archive: " + archive_error_string(a.get()));
    }
    HM_TRY_VOID(walk_archive(a.get(), path, bundle, 0));
  }
  summary.sha256 = to_hex(hasher.finish());
  summary.notes = std::move(bundle.notes);
  const bool verify = !trust.vendor_roots().empty();
  if (!verify)
    summary.notes.push_back("unverified chain: no Infineon roots configured (imported as candidates)");
  if (bundle.chips.empty()) summary.notes.push_back("no <chipID>_<objectID>.pem certificates found");

  std::size_t index = 0;
  for (auto& [id, chip] : bundle.chips) {
    ManifestEntry entry;
    entry.index = index++;
    entry.unique_id = id;
    entry.format = ManifestFormat::infineon;
    entry.part_number = options.part_number;
    entry.reel = summary.reel;
    for (const auto& [object, cert] : chip.objects) entry.object_ids.push_back(object);
    if (!chip.problems.empty()) {
      entry.rejected = chip.problems.front();
    } else if (auto it = chip.objects.find("E0E0"); it == chip.objects.end() || !it->second) {
      entry.rejected = "no E0E0 certificate (the birth certificate)";
    } else {
      entry.bc = it->second;
      if (verify) {
        // No provisioning time in a bundle: judge the chain when the certificate was issued.
        auto ok = trust.vendor_roots().verify(*entry.bc, trust.intermediates(), entry.bc->not_before());
        if (!ok) {
          entry.rejected =
              "E0E0 chain does not verify to an Infineon root: " + chain_failure(ok.error().detail);
        } else {
          entry.chain_verified = true;
        }
      }
      if (entry.accepted()) derive_bc_fields(entry);
    }
    ++summary.entries;
    HM_TRY_VOID(on_entry(std::move(entry)));
  }
  return summary;
}

}  // namespace hallmark::inventory::detail
