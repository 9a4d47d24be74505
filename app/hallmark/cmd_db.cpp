// hallmark db migrate|check, hallmark audit verify|list, hallmark cert list|export
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "db.hpp"
#include "hallmark/inventory/devices.hpp"
#include "hallmark/x509/certificate.hpp"
#include "home.hpp"
#include "output.hpp"

namespace hallmark::app {

namespace {

Result<Seconds> parse_date(const std::string& text) {
  if (text.size() == 10) return parse_iso8601(text + "T00:00:00Z");
  return parse_iso8601(text);
}

}  // namespace

void add_db_commands(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* db = app.add_subcommand("db", "Database schema: migrate and check");
  db->require_subcommand(1);
  db->add_subcommand("migrate", "Apply pending schema migrations (idempotent)")->callback([&global, &status] {
    with_database(global.home, global.db, status, SchemaPolicy::any,
                  [](const PkiHome& home, store::Store& s) -> Status {
                    const auto before = HM_TRY(s.check());
                    const auto after = HM_TRY(s.migrate());
                    fmt::print(
                        "{} schema: version {} -> {} ({})\n", s.backend(), before.current_version,
                        after.current_version,
                        before.current_version == after.current_version ? "nothing to do" : "migrated");
                    (void)home;
                    return {};
                  });
  });
  db->add_subcommand("check", "Report the schema version and check integrity (engine check and audit chain)")
      ->callback([&global, &status] {
        with_database(global.home, global.db, status, SchemaPolicy::any,
                      [&status](const PkiHome&, store::Store& s) -> Status {
                        const auto schema = HM_TRY(s.check());
                        fmt::print("backend:  {}\nschema:   version {} of {}{}\n", s.backend(),
                                   schema.current_version, schema.latest_version,
                                   schema.pending() ? " (run 'hallmark db migrate')" : "");
                        if (schema.pending()) {
                          status = 6;
                          return {};
                        }
                        const auto integrity = HM_TRY(s.integrity_check());
                        fmt::print("engine:   {}\naudit:    {} records, {}\n", integrity.detail,
                                   integrity.audit.records,
                                   integrity.audit.ok ? "chain intact" : "BROKEN: " + integrity.audit.reason);
                        if (!integrity.ok) status = 1;
                        return {};
                      });
      });

  auto* audit = app.add_subcommand("audit", "The tamper-evident audit log");
  audit->require_subcommand(1);
  audit->add_subcommand("verify", "Walk the hash chain; name the first broken record")
      ->callback([&global, &status] {
        with_database(global.home, global.db, status, SchemaPolicy::require_current,
                      [&status](const PkiHome&, store::Store& s) -> Status {
                        const auto v = HM_TRY(s.verify_audit_chain());
                        if (v.ok) {
                          fmt::print("audit chain intact: {} records, head {}\n", v.records,
                                     to_hex(v.head_hash));
                        } else {
                          fmt::print("audit chain BROKEN at record {}: {}\n",
                                     v.first_broken_id ? std::to_string(*v.first_broken_id) : "?", v.reason);
                          status = 1;
                        }
                        return {};
                      });
      });
  {
    auto* cmd = audit->add_subcommand("list", "Print audit records (oldest first)");
    auto after = std::make_shared<std::int64_t>(0);
    auto limit = std::make_shared<std::int64_t>(100);
    auto json = std::make_shared<bool>(false);
    cmd->add_option("--after", *after, "Only records with an id greater than this");
    cmd->add_option("--limit", *limit, "At most this many records")->capture_default_str();
    cmd->add_flag("--json", *json, "One JSON object per line");
    cmd->callback([&global, &status, after, limit, json] {
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome&, store::Store& s) -> Status {
                      const auto records = HM_TRY(s.list_audit(*after, *limit));
                      std::vector<std::vector<std::string>> rows{
                          {"ID", "TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME", "REASON"}};
                      for (const auto& r : records) {
                        const auto& e = r.event;
                        if (*json) {
                          fmt::print("{}\n", nlohmann::json{{"id", r.id},
                                                            {"time", to_iso8601(e.time)},
                                                            {"actor", e.actor},
                                                            {"action", e.action},
                                                            {"object", e.object},
                                                            {"outcome", store::to_string(e.outcome)},
                                                            {"reason", e.reason},
                                                            {"request_id", e.request_id},
                                                            {"hash", to_hex(r.hash)}}
                                                 .dump());
                        } else {
                          rows.push_back({std::to_string(r.id), to_iso8601(e.time), e.actor, e.action,
                                          e.object, std::string(store::to_string(e.outcome)), e.reason});
                        }
                      }
                      if (!*json) print_table(rows);
                      return {};
                    });
    });
  }

  auto* cert = app.get_subcommand("cert");
  {
    auto* cmd = cert->add_subcommand("list", "List issued certificates recorded in the database");
    auto ca = std::make_shared<std::string>();
    auto device = std::make_shared<std::string>();
    auto state = std::make_shared<std::string>();
    auto expiring = std::make_shared<std::string>();
    auto limit = std::make_shared<std::int64_t>(1000);
    auto json = std::make_shared<bool>(false);
    cmd->add_option("--ca", *ca, "Only certificates issued by this CA");
    cmd->add_option("--device", *device, "Only this device's (unique id, UKID or BC fingerprint)");
    cmd->add_option("--state", *state, "good or revoked");
    cmd->add_option("--expiring-before", *expiring,
                    "Only those whose notAfter is before this date (YYYY-MM-DD)");
    cmd->add_option("--limit", *limit, "At most this many")->capture_default_str();
    cmd->add_flag("--json", *json, "JSON output");
    cmd->callback([&global, &status, ca, device, state, expiring, limit, json] {
      with_database(
          global.home, global.db, status, SchemaPolicy::require_current,
          [&](const PkiHome&, store::Store& s) -> Status {
            store::CertificateFilter filter;
            filter.limit = *limit;
            if (!ca->empty()) filter.issuer_ca = *ca;
            if (!device->empty()) filter.device_id = HM_TRY(inventory::find_device(s, *device)).id;
            if (*state == "good") {
              filter.status = store::CertificateStatus::good;
            } else if (*state == "revoked") {
              filter.status = store::CertificateStatus::revoked;
            } else if (!state->empty()) {
              return fail(Errc::invalid_input,
                          fmt::format("--state must be good or revoked (got '{}')", *state));
            }
            if (!expiring->empty()) {
              auto t = parse_date(*expiring);
              if (!t) return fail(Errc::invalid_input, "--expiring-before: " + t.error().detail);
              filter.expiring_before = *t;
            }
            const auto certs = HM_TRY(s.list_certificates(filter));
            if (*json) {
              auto out = nlohmann::json::array();
              for (const auto& c : certs) {
                out.push_back({{"serial", c.serial_hex},
                               {"ca", c.issuer_ca},
                               {"status", store::to_string(c.status)},
                               {"not_before", to_iso8601(c.not_before)},
                               {"not_after", to_iso8601(c.not_after)},
                               {"subject", c.subject}});
              }
              fmt::print("{}\n", out.dump(2));
              return {};
            }
            std::vector<std::vector<std::string>> rows{{"SERIAL", "CA", "STATUS", "NOT AFTER", "SUBJECT"}};
            for (const auto& c : certs) {
              rows.push_back({c.serial_hex, c.issuer_ca, std::string(store::to_string(c.status)),
                              date_or_never(c.not_after), c.subject});
            }
            print_table(rows);
            return {};
          });
    });
  }
  {
    auto* cmd = cert->add_subcommand(
        "export", "Export an issued certificate from the database (by serial or by the device's UKID)");
    auto serial = std::make_shared<std::string>();
    auto ukid = std::make_shared<std::string>();
    auto format = std::make_shared<std::string>("pem");
    auto chain = std::make_shared<bool>(false);
    auto out = std::make_shared<std::string>();
    auto* s_opt = cmd->add_option("--serial", *serial, "Serial number (hex)");
    auto* u_opt = cmd->add_option("--ukid", *ukid, "The device's UKID: its newest certificate");
    s_opt->excludes(u_opt);
    cmd->add_option("--format", *format, "pem, der or p7b")->capture_default_str();
    cmd->add_flag("--chain", *chain, "Include the issuing CA's chain (pem, p7b)");
    cmd->add_option("--out", *out, "Output file (default: stdout)");
    cmd->callback([&global, &status, serial, ukid, format, chain, out] {
      with_database(
          global.home, global.db, status, SchemaPolicy::require_current,
          [&](const PkiHome& home, store::Store& s) -> Status {
            if (serial->empty() && ukid->empty()) return fail(Errc::invalid_input, "give --serial or --ukid");
            if (*format != "pem" && *format != "der" && *format != "p7b") {
              return fail(Errc::invalid_input,
                          fmt::format("--format must be pem, der or p7b (got '{}')", *format));
            }
            if (*format == "der" && *chain)
              return fail(Errc::invalid_input, "--chain needs --format pem or p7b");
            std::string wanted = *serial;
            std::transform(wanted.begin(), wanted.end(), wanted.begin(), ::tolower);
            const auto record = serial->empty() ? HM_TRY(s.find_certificate_by_ukid(*ukid))
                                                : HM_TRY(s.find_certificate_by_serial(wanted));
            auto cert = x509::Certificate::parse_der(record.der);
            if (!cert)
              return std::unexpected(cert.error().with_context("stored certificate " + record.serial_hex));
            std::vector<x509::Certificate> certs{*cert};
            if (*chain) {
              for (auto& c : HM_TRY(home.chain_of(record.issuer_ca))) certs.push_back(std::move(c));
            }
            Bytes bytes;
            if (*format == "der") {
              bytes = cert->to_der();
            } else if (*format == "p7b") {
              bytes = x509::make_pkcs7_certs_only(certs);
            } else {
              std::string pem;
              for (const auto& c : certs) pem += c.to_pem();
              bytes = to_bytes(pem);
            }
            return write_output(*out, bytes);
          });
    });
  }
}

}  // namespace hallmark::app
