// hallmark manifest import, hallmark device mount|list|show|retire
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "db.hpp"
#include "hallmark/inventory/devices.hpp"
#include "hallmark/inventory/import.hpp"
#include "hallmark/revocation/revocation.hpp"
#include "home.hpp"

namespace hallmark::app {

namespace {

Status write_json(const std::string& path, const nlohmann::json& doc) {
  return write_file_atomic(path, as_bytes(doc.dump(2) + "\n"), 0644);
}

}  // namespace

void add_inventory_commands(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* manifest = app.add_subcommand("manifest", "Silicon vendors' reel manifests");
  manifest->require_subcommand(1);
  {
    auto* cmd = manifest->add_subcommand(
        "import",
        "Verify reel manifests and import their devices into the inventory, one transaction per file.\n"
        "Formats: Microchip Trust&GO/TrustFLEX/TrustMANAGER JSON (JWS ES256), hallmark reels (the same\n"
        "container), Infineon OPTIGA Trust M bundles (a directory of <chip>_<object>.pem or the .7z).");
    auto files = std::make_shared<std::vector<std::string>>();
    auto format = std::make_shared<std::string>("auto");
    auto signers = std::make_shared<std::string>();
    auto roots = std::make_shared<std::string>();
    auto intermediates = std::make_shared<std::string>();
    auto report_path = std::make_shared<std::string>();
    auto part_number = std::make_shared<std::string>();
    auto threads = std::make_shared<unsigned>(0);
    cmd->add_option("files", *files, "Manifest files, Infineon directories or .7z bundles")->required();
    cmd->add_option("--format", *format, "auto, hallmark, microchip or infineon")->capture_default_str();
    cmd->add_option("--signers", *signers, "Directory (or file) of pinned manifest-signer certificates");
    cmd->add_option("--vendor-roots", *roots,
                    "File or directory of vendor root certificates for device chains");
    cmd->add_option("--intermediates", *intermediates, "File or directory of vendor intermediate CAs");
    cmd->add_option("--report", *report_path, "Write a JSON report here");
    cmd->add_option("--part-number", *part_number, "Part number to record for Infineon bundles");
    cmd->add_option("--threads", *threads, "Verification threads (default: one per core)");
    cmd->callback(
        [&global, &status, files, format, signers, roots, intermediates, report_path, part_number, threads] {
          with_database(global.home, global.db, status, SchemaPolicy::require_current,
                        [&](const PkiHome&, store::Store& s) -> Status {
                          inventory::ImportOptions options;
                          options.read.format = HM_TRY(inventory::parse_manifest_format(*format));
                          options.read.part_number = *part_number;
                          options.read.threads = *threads;
                          const auto trust =
                              HM_TRY(inventory::load_manifest_trust(*signers, *roots, *intermediates));
                          const auto report = inventory::import_manifests(s, *files, trust, options);
                          fmt::print("{}", report.to_table());
                          if (!report_path->empty()) HM_TRY_VOID(write_json(*report_path, report.to_json()));
                          if (!report.ok())
                            return fail(Errc::invalid_input, "some files could not be imported (see above)");
                          if (report.rejected() > 0) status = 2;
                          return {};
                        });
        });
  }

  auto* device = app.add_subcommand("device", "The factory line: mount devices, list, show, retire");
  device->require_subcommand(1);
  {
    auto* cmd = device->add_subcommand(
        "mount",
        "Tag devices as mounted on a board and create their end entities (Option 2: username = UKID,\n"
        "computed from the BC; Option 3: keyed by the BC, with the secret digest).");
    auto unique_ids = std::make_shared<std::vector<std::string>>();
    auto ukids = std::make_shared<std::vector<std::string>>();
    auto csv = std::make_shared<std::string>();
    auto alias = std::make_shared<std::string>();
    auto station = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    cmd->add_option("--unique-id", *unique_ids, "Vendor unique id (repeatable)");
    cmd->add_option("--ukid", *ukids, "UKID (repeatable)");
    cmd->add_option("--from-csv", *csv, "CSV with a unique_id or ukid column (optional station, alias)")
        ->check(CLI::ExistingFile);
    cmd->add_option("--alias", *alias, "EST alias the end entities enroll through");
    cmd->add_option("--station", *station, "Mounting station, recorded with the device");
    cmd->add_flag("--json", *json, "JSON output");
    cmd->callback([&global, &status, unique_ids, ukids, csv, alias, station, json] {
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome&, store::Store& s) -> Status {
                      std::vector<inventory::MountRequest> requests;
                      if (!csv->empty()) requests = HM_TRY(inventory::load_mount_csv(*csv));
                      for (const auto& id : *unique_ids) requests.push_back({id, "", "", "", 0});
                      for (const auto& u : *ukids) requests.push_back({"", u, "", "", 0});
                      if (requests.empty())
                        return fail(Errc::invalid_input, "give --unique-id, --ukid or --from-csv");
                      inventory::MountOptions options;
                      options.alias = *alias;
                      options.station = *station;
                      const auto report = inventory::mount_devices(s, requests, options);
                      fmt::print("{}", *json ? report.to_json().dump(2) + "\n" : report.to_table());
                      if (!report.all_mounted()) status = 4;
                      return {};
                    });
    });
  }
  {
    auto* cmd = device->add_subcommand("list", "List devices, filtered by state, reel and part number");
    auto state = std::make_shared<std::string>();
    auto reel = std::make_shared<std::string>();
    auto part = std::make_shared<std::string>();
    auto limit = std::make_shared<std::int64_t>(1000);
    auto after = std::make_shared<std::int64_t>(0);
    auto json = std::make_shared<bool>(false);
    cmd->add_option("--state", *state, "received, mounted, enrolled or retired");
    cmd->add_option("--reel", *reel, "Reel name, manifest id or the manifest file's SHA-256");
    cmd->add_option("--part-number", *part, "Part number");
    cmd->add_option("--limit", *limit, "At most this many")->capture_default_str();
    cmd->add_option("--after", *after, "Only devices with an id greater than this (paging)");
    cmd->add_flag("--json", *json, "JSON output");
    cmd->callback([&global, &status, state, reel, part, limit, after, json] {
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome&, store::Store& s) -> Status {
                      inventory::DeviceFilter filter;
                      if (!state->empty()) filter.state = HM_TRY(store::parse_device_state(*state));
                      if (!reel->empty()) filter.manifest_id = HM_TRY(inventory::find_reel(s, *reel)).id;
                      if (!part->empty()) filter.part_number = *part;
                      filter.limit = *limit;
                      filter.after_id = *after;
                      const auto devices = HM_TRY(inventory::list_devices(s, filter));
                      if (*json) {
                        auto out = nlohmann::json::array();
                        for (const auto& d : devices) out.push_back(inventory::device_to_json(d));
                        fmt::print("{}\n", out.dump(2));
                      } else {
                        fmt::print("{}", inventory::devices_table(devices));
                      }
                      return {};
                    });
    });
  }
  {
    auto* cmd = device->add_subcommand("show", "Show one device (unique id, UKID or BC fingerprint)");
    auto key = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    cmd->add_option("device", *key, "Unique id, UKID or BC SHA-256 fingerprint")->required();
    cmd->add_flag("--json", *json, "JSON output");
    cmd->callback([&global, &status, key, json] {
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome&, store::Store& s) -> Status {
                      const auto d = HM_TRY(inventory::find_device(s, *key));
                      fmt::print("{}", *json ? inventory::device_to_json(d).dump(2) + "\n"
                                             : inventory::describe_device(d));
                      return {};
                    });
    });
  }
  {
    auto* cmd = device->add_subcommand(
        "retire",
        "Retire a device (any state -> retired); its good IDCs are revoked first (cessationOfOperation)");
    auto key = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>();
    cmd->add_option("device", *key, "Unique id, UKID or BC SHA-256 fingerprint")->required();
    cmd->add_option("--reason", *reason, "Why, for the audit log");
    cmd->callback([&global, &status, key, reason] {
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome&, store::Store& s) -> Status {
                      inventory::RetireOptions options;
                      options.reason = *reason;
                      // Revoked before the state changes: a retired device never keeps a good IDC.
                      const auto found = HM_TRY(inventory::find_device(s, *key));
                      if (found.state != store::DeviceState::retired) {
                        revocation::RevokeOptions ro;
                        const auto revoked = HM_TRY(revocation::revoke_device_certificates(
                            s, found.id, x509::RevocationReason::cessation_of_operation, ro));
                        for (const auto& c : revoked)
                          fmt::print("Revoked certificate {} (CA {}, reason cessationOfOperation)\n",
                                     c.serial_hex, c.issuer_ca);
                      }
                      const auto d = HM_TRY(inventory::retire_device(s, *key, options));
                      fmt::print("Retired device {}\n", d.vendor_unique_id);
                      return {};
                    });
    });
  }
}

}  // namespace hallmark::app
