#include "hallmark/inventory/devices.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cctype>

#include "hallmark/x509/certificate.hpp"
#include "readers.hpp"

namespace hallmark::inventory {

namespace {

bool is_hex64(std::string_view s) {
  return s.size() == 64 && std::ranges::all_of(s, [](unsigned char c) { return std::isxdigit(c); });
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

store::AuditEvent audit_event(const Clock* clock, std::string actor, std::string action, std::string object,
                              std::string reason, std::string request_id) {
  const SystemClock system_clock;
  store::AuditEvent e;
  e.time = (clock != nullptr ? *clock : static_cast<const Clock&>(system_clock)).now();
  e.actor = std::move(actor);
  e.action = std::move(action);
  e.object = std::move(object);
  e.reason = std::move(reason);
  e.request_id = std::move(request_id);
  return e;
}

}  // namespace

// ---- identities ----

Result<std::string> ukid_of_bc(ByteView bc_der) {
  auto cert = x509::Certificate::parse_der(bc_der);
  if (!cert) return std::unexpected(cert.error().with_context("BC"));
  return cert->public_key().sha256_hex();
}

std::string_view to_string(DeviceOption option) noexcept {
  switch (option) {
    case DeviceOption::option2: return "option2";
    case DeviceOption::option3: return "option3";
    case DeviceOption::lite: return "lite";
  }
  return "option2";
}

DeviceOption device_option(const store::DeviceRecord& device) {
  if (device.bc_der.empty()) return DeviceOption::lite;
  if (device.ukid_secret_digest) return DeviceOption::option3;
  return DeviceOption::option2;
}

Result<store::EndEntityRecord> make_end_entity(const store::DeviceRecord& device, std::string_view alias,
                                               const x509::Certificate* bc) {
  store::EndEntityRecord ee;
  ee.device_id = device.id;
  ee.est_alias = std::string(alias);
  nlohmann::json subject = {{"uniqueId", device.vendor_unique_id}};
  if (!device.part_number.empty()) subject["partNumber"] = device.part_number;
  switch (device_option(device)) {
    case DeviceOption::option2: {
      // The device computes its UKID from its own key; recompute it, never trust a stored copy alone.
      std::string ukid;
      if (bc != nullptr && bc->to_der() == device.bc_der) {
        ukid = bc->public_key().sha256_hex();
      } else {
        ukid = HM_TRY(ukid_of_bc(device.bc_der));
      }
      if (device.ukid && *device.ukid != ukid) {
        return fail(Errc::conflict, "stored UKID " + *device.ukid + " differs from the BC's UKID " + ukid);
      }
      ee.username = ukid;
      subject["serialNumber"] = ukid;
      subject["ukid"] = ukid;
      break;
    }
    case DeviceOption::option3:
      // The UKID is a secret here: the end entity is keyed by the BC, the secret's digest stays on
      // the device record.
      ee.username = device.bc_sha256;
      subject["serialNumber"] = device.vendor_unique_id;
      subject["bcSha256"] = device.bc_sha256;
      break;
    case DeviceOption::lite:
      ee.username = device.vendor_unique_id;
      subject["serialNumber"] = device.vendor_unique_id;
      subject["keyPinnedAtFirstContact"] = true;
      break;
  }
  ee.subject_json = subject.dump();
  return ee;
}

Result<store::DeviceRecord> find_device(store::InventoryStore& store, std::string_view key) {
  if (key.empty()) return fail(Errc::invalid_input, "empty device key");
  if (is_hex64(key)) {
    const std::string k = lower(key);
    if (auto d = store.find_device_by_ukid(k); d || d.error().code != Errc::not_found) return d;
    if (auto d = store.find_device_by_bc_fingerprint(k); d || d.error().code != Errc::not_found) return d;
  }
  auto d = store.find_device_by_unique_id(detail::canonical_unique_id(key));
  if (!d && d.error().code == Errc::not_found) {
    return fail(Errc::not_found, "no device with unique id, UKID or BC fingerprint " + std::string(key));
  }
  return d;
}

// ---- CSV ----

namespace {

// Splits one CSV record (RFC 4180 quoting); `text` positioned at the record's start.
Result<std::vector<std::string>> csv_record(std::string_view text, std::size_t& pos, std::size_t line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  bool was_quoted = false;
  while (pos < text.size()) {
    const char c = text[pos++];
    if (quoted) {
      if (c == '"') {
        if (pos < text.size() && text[pos] == '"') {
          fields.back() += '"';
          ++pos;
        } else {
          quoted = false;
        }
      } else {
        fields.back() += c;
      }
      continue;
    }
    if (c == '"' && fields.back().empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
      was_quoted = false;
    } else if (c == '\n') {
      break;
    } else if (c == '\r') {
      if (pos < text.size() && text[pos] == '\n') ++pos;
      break;
    } else {
      fields.back() += c;
    }
  }
  if (quoted)
    return fail(Errc::invalid_input, "line " + std::to_string(line) + ": unterminated quoted field");
  for (auto& f : fields) {
    const auto b = f.find_first_not_of(" \t");
    const auto e = f.find_last_not_of(" \t");
    f = b == std::string::npos ? std::string() : f.substr(b, e - b + 1);
  }
  return fields;
}

}  // namespace

Result<std::vector<MountRequest>> parse_mount_csv(std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::size_t pos = 0;
  std::size_t line = 0;
  std::optional<std::vector<std::string>> header;
  int col_uid = -1, col_ukid = -1, col_station = -1, col_alias = -1;
  std::vector<MountRequest> out;
  while (pos < text.size()) {
    ++line;
    const std::size_t start = pos;
    auto fields = HM_TRY(csv_record(text, pos, line));
    // Quoted fields may span lines: count the line breaks consumed.
    for (std::size_t i = start; i + 1 < pos; ++i) {
      if (text[i] == '\n') ++line;
    }
    if (fields.size() == 1 && fields[0].empty()) continue;
    if (!fields.empty() && fields[0].starts_with('#')) continue;
    if (!header) {
      header = fields;
      for (int i = 0; i < static_cast<int>(fields.size()); ++i) {
        std::string name = lower(fields[static_cast<std::size_t>(i)]);
        std::erase(name, '-');
        if (name == "unique_id" || name == "uniqueid")
          col_uid = i;
        else if (name == "ukid")
          col_ukid = i;
        else if (name == "station")
          col_station = i;
        else if (name == "alias")
          col_alias = i;
        else
          return fail(Errc::invalid_input, "line " + std::to_string(line) + ": unknown column \"" +
                                               fields[static_cast<std::size_t>(i)] +
                                               "\" (unique_id, ukid, station, alias)");
      }
      if (col_uid < 0 && col_ukid < 0) {
        return fail(Errc::invalid_input,
                    "line " + std::to_string(line) + ": header needs a unique_id or ukid column");
      }
      continue;
    }
    auto field = [&fields](int col) {
      return col >= 0 && col < static_cast<int>(fields.size()) ? fields[col] : "";
    };
    if (fields.size() > header->size()) {
      return fail(Errc::invalid_input, "line " + std::to_string(line) + ": more fields than the header");
    }
    MountRequest r;
    r.unique_id = field(col_uid);
    r.ukid = field(col_ukid);
    r.station = field(col_station);
    r.alias = field(col_alias);
    r.line = line;
    if (r.unique_id.empty() == r.ukid.empty()) {
      return fail(Errc::invalid_input,
                  "line " + std::to_string(line) + ": give exactly one of unique_id and ukid");
    }
    out.push_back(std::move(r));
  }
  if (!header) return fail(Errc::invalid_input, "empty CSV: a header row is required");
  return out;
}

Result<std::vector<MountRequest>> load_mount_csv(const std::string& path) {
  const std::string text = HM_TRY(read_text_file(path));
  auto rows = parse_mount_csv(text);
  if (!rows) return std::unexpected(rows.error().with_context(path));
  return rows;
}

// ---- mount ----

std::string_view to_string(MountStatus status) noexcept {
  switch (status) {
    case MountStatus::mounted: return "mounted";
    case MountStatus::unknown: return "unknown";
    case MountStatus::already_mounted: return "already-mounted";
    case MountStatus::refused: return "refused";
  }
  return "refused";
}

MountOutcome mount_device(store::Store& store, const MountRequest& request, const MountOptions& options) {
  MountOutcome out;
  out.request = request;
  const std::string station = request.station.empty() ? options.station : request.station;
  const std::string alias = request.alias.empty() ? options.alias : request.alias;
  auto refuse = [&out](MountStatus status, std::string reason) {
    out.status = status;
    out.reason = std::move(reason);
    return std::move(out);
  };

  Result<store::DeviceRecord> found = fail(Errc::invalid_input, "give a unique id or a UKID");
  std::string asked;
  if (!request.unique_id.empty() && request.ukid.empty()) {
    asked = "uniqueId " + request.unique_id;
    found = store.find_device_by_unique_id(detail::canonical_unique_id(request.unique_id));
  } else if (!request.ukid.empty() && request.unique_id.empty()) {
    asked = "UKID " + request.ukid;
    found = store.find_device_by_ukid(lower(request.ukid));
  } else {
    return refuse(MountStatus::refused, "give exactly one of unique id and UKID");
  }
  if (!found) {
    if (found.error().code == Errc::not_found) return refuse(MountStatus::unknown, "no device with " + asked);
    return refuse(MountStatus::refused, "store: " + found.error().detail);
  }
  const store::DeviceRecord& device = *found;
  out.unique_id = device.vendor_unique_id;
  out.option = std::string(to_string(device_option(device)));
  switch (device.state) {
    case store::DeviceState::received: break;
    case store::DeviceState::mounted:
      return refuse(MountStatus::already_mounted,
                    "already mounted" +
                        (device.station.empty() ? std::string() : " at station " + device.station) +
                        (device.mounted_at ? " on " + to_iso8601(*device.mounted_at) : std::string()));
    case store::DeviceState::enrolled:
      return refuse(MountStatus::refused, "device is enrolled (mounted before)");
    case store::DeviceState::retired: return refuse(MountStatus::refused, "device is retired");
  }
  if (device.bc_revoked) return refuse(MountStatus::refused, "the device's BC is revoked");
  if (device.bc_consumed) return refuse(MountStatus::refused, "the device's BC is consumed");

  auto ee = make_end_entity(device, alias);
  if (!ee) return refuse(MountStatus::refused, ee.error().detail);
  ee->allowed_requests = options.allowed_requests;
  out.username = ee->username;

  // The end entity and the state change in one store transaction (an end entity an earlier version
  // left for this very device is reused; one of another device refuses the mount).
  const auto audit = audit_event(options.clock, options.actor, "mount", device.vendor_unique_id,
                                 station.empty() ? std::string() : "station=" + station, options.request_id);
  if (auto mounted = store.mount_device(device.vendor_unique_id, station, *ee, audit); !mounted) {
    const auto& e = mounted.error();
    if (e.code == Errc::conflict && e.detail.find("exists for another device") != std::string::npos)
      return refuse(MountStatus::refused, e.detail);
    if (e.code == Errc::conflict) return refuse(MountStatus::already_mounted, e.detail);
    return refuse(MountStatus::refused, "store: " + e.detail);
  }
  out.status = MountStatus::mounted;
  return out;
}

MountReport mount_devices(store::Store& store, const std::vector<MountRequest>& requests,
                          const MountOptions& options) {
  MountReport report;
  report.outcomes.reserve(requests.size());
  for (const auto& r : requests) report.outcomes.push_back(mount_device(store, r, options));
  return report;
}

std::size_t MountReport::count(MountStatus status) const {
  return static_cast<std::size_t>(
      std::ranges::count_if(outcomes, [status](const MountOutcome& o) { return o.status == status; }));
}

nlohmann::json MountReport::to_json() const {
  nlohmann::json out = {{"mounted", count(MountStatus::mounted)},
                        {"unknown", count(MountStatus::unknown)},
                        {"already_mounted", count(MountStatus::already_mounted)},
                        {"refused", count(MountStatus::refused)},
                        {"devices", nlohmann::json::array()}};
  for (const auto& o : outcomes) {
    nlohmann::json j = {{"status", to_string(o.status)},
                        {"unique_id", o.unique_id},
                        {"username", o.username},
                        {"option", o.option},
                        {"reason", o.reason}};
    if (!o.request.unique_id.empty()) j["requested_unique_id"] = o.request.unique_id;
    if (!o.request.ukid.empty()) j["requested_ukid"] = o.request.ukid;
    if (o.request.line != 0) j["line"] = o.request.line;
    out["devices"].push_back(std::move(j));
  }
  return out;
}

std::string MountReport::to_table() const {
  std::string out = fmt::format("{:<6} {:<16} {:<22} {:<8} {:<64}  {}\n", "LINE", "STATUS", "UNIQUE ID",
                                "OPTION", "USERNAME", "REASON");
  for (const auto& o : outcomes) {
    const std::string id = o.unique_id.empty()
                               ? (o.request.unique_id.empty() ? o.request.ukid : o.request.unique_id)
                               : o.unique_id;
    out += fmt::format("{:<6} {:<16} {:<22} {:<8} {:<64}  {}\n",
                       o.request.line == 0 ? "-" : std::to_string(o.request.line), to_string(o.status), id,
                       o.option.empty() ? "-" : o.option, o.username.empty() ? "-" : o.username, o.reason);
  }
  out += fmt::format("mounted {}, unknown {}, already mounted {}, refused {}\n", count(MountStatus::mounted),
                     count(MountStatus::unknown), count(MountStatus::already_mounted),
                     count(MountStatus::refused));
  return out;
}

// ---- list / show / retire ----

Result<store::ManifestRecord> find_reel(store::InventoryStore& store, std::string_view key) {
  if (is_hex64(key)) {
    auto m = store.find_manifest(lower(key));
    if (m || m.error().code != Errc::not_found) return m;
  }
  if (!key.empty() && std::ranges::all_of(key, [](unsigned char c) { return std::isdigit(c); }) &&
      key.size() < 19) {
    auto m = store.find_manifest_by_id(std::stoll(std::string(key)));
    if (m || m.error().code != Errc::not_found) return m;
  }
  auto m = store.find_manifest_by_reel(key);
  if (!m && m.error().code == Errc::not_found)
    return fail(Errc::not_found, "no manifest with id, SHA-256 or reel name " + std::string(key));
  return m;
}

Result<std::vector<store::DeviceRecord>> list_devices(store::InventoryStore& store,
                                                      const DeviceFilter& filter) {
  return store.list_devices(filter);
}

bool matches(const DeviceFilter& filter, const store::DeviceRecord& device) {
  if (filter.state && device.state != *filter.state) return false;
  if (filter.manifest_id && device.manifest_id != filter.manifest_id) return false;
  if (filter.part_number && device.part_number != *filter.part_number) return false;
  return device.id > filter.after_id;
}

nlohmann::json device_to_json(const store::DeviceRecord& d) {
  nlohmann::json j = {{"id", d.id},
                      {"unique_id", d.vendor_unique_id},
                      {"state", store::to_string(d.state)},
                      {"option", to_string(device_option(d))},
                      {"part_number", d.part_number},
                      {"bc_sha256", d.bc_sha256},
                      {"bc_issuer", d.bc_issuer},
                      {"bc_revoked", d.bc_revoked},
                      {"bc_consumed", d.bc_consumed},
                      {"station", d.station},
                      {"key_pinned_at_first_contact", d.bc_der.empty()}};
  j["ukid"] = d.ukid ? nlohmann::json(*d.ukid) : nlohmann::json();
  j["ukid_secret_digest"] = d.ukid_secret_digest ? nlohmann::json(*d.ukid_secret_digest) : nlohmann::json();
  j["manifest_id"] = d.manifest_id ? nlohmann::json(*d.manifest_id) : nlohmann::json();
  j["mounted_at"] = d.mounted_at ? nlohmann::json(to_iso8601(*d.mounted_at)) : nlohmann::json();
  return j;
}

std::string devices_table(const std::vector<store::DeviceRecord>& devices) {
  std::string out = fmt::format("{:>8} {:<22} {:<9} {:<8} {:<20} {:>8}  {}\n", "ID", "UNIQUE ID", "STATE",
                                "OPTION", "PART NUMBER", "MANIFEST", "UKID / BC SHA-256");
  for (const auto& d : devices) {
    const std::string key =
        d.ukid ? *d.ukid : (d.bc_sha256.empty() ? "(key pinned at first contact)" : d.bc_sha256);
    std::string state(store::to_string(d.state));
    if (d.bc_revoked) state += "*";
    out += fmt::format("{:>8} {:<22} {:<9} {:<8} {:<20} {:>8}  {}\n", d.id, d.vendor_unique_id, state,
                       to_string(device_option(d)), d.part_number,
                       d.manifest_id ? std::to_string(*d.manifest_id) : "-", key);
  }
  return out;
}

std::string describe_device(const store::DeviceRecord& d) {
  std::string out;
  auto line = [&out](std::string_view k, std::string_view v) { out += fmt::format("{:<20} {}\n", k, v); };
  line("Unique id", d.vendor_unique_id);
  line("State", store::to_string(d.state));
  line("Option", to_string(device_option(d)));
  line("Part number", d.part_number);
  line("Manifest", d.manifest_id ? std::to_string(*d.manifest_id) : "-");
  line("UKID", d.ukid.value_or("-"));
  if (d.ukid_secret_digest) line("UKID secret SHA-256", *d.ukid_secret_digest);
  line("BC SHA-256", d.bc_sha256.empty() ? "- (key pinned at first contact)" : d.bc_sha256);
  line("BC issuer", d.bc_issuer.empty() ? "-" : d.bc_issuer);
  if (!d.bc_der.empty()) {
    if (auto c = x509::Certificate::parse_der(d.bc_der)) {
      line("BC subject", c->subject().to_string());
      line("BC validity", to_iso8601(c->not_before()) + " to " + to_iso8601(c->not_after()));
    }
  }
  line("BC flags", std::string(d.bc_revoked ? "revoked " : "") + (d.bc_consumed ? "consumed" : "") +
                       (!d.bc_revoked && !d.bc_consumed ? "-" : ""));
  line("Station", d.station.empty() ? "-" : d.station);
  line("Mounted at", d.mounted_at ? to_iso8601(*d.mounted_at) : "-");
  return out;
}

Result<store::DeviceRecord> retire_device(store::Store& store, std::string_view key,
                                          const RetireOptions& options) {
  store::DeviceRecord device = HM_TRY(find_device(store, key));
  if (device.state == store::DeviceState::retired) {
    return fail(Errc::conflict, "device " + device.vendor_unique_id + " is already retired");
  }
  const auto audit = audit_event(options.clock, options.actor, "retire", device.vendor_unique_id,
                                 options.reason, options.request_id);
  HM_TRY_VOID(store.retire_device(device.vendor_unique_id, audit));
  return find_device(store, device.vendor_unique_id);
}

}  // namespace hallmark::inventory
