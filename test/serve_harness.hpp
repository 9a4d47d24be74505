#pragma once
// Helpers for end-to-end tests of `hallmark serve` as a real process (test/serve_process.hpp): a PKI
// home from `hallmark init`, a device whose birth certificate is in the inventory, and curl + openssl
// to drive the server. Header-only; the tests that make devices link the store and inventory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/inventory/devices.hpp"
#include "hallmark/store/store.hpp"
#include "process.hpp"
#include "serve_process.hpp"

namespace hallmark::testing {

// Writes `text` to `path` (atomically); a fatal test failure if it cannot.
inline bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

inline void spit(const std::string& path, std::string_view text) {
  ASSERT_TRUE(write_file_atomic(path, as_bytes(text)));
}

// `prefix` and 12 random hex digits: a file name no other helper call uses.
inline std::string random_name(const std::string& prefix) {
  return prefix + to_hex(crypto::random_bytes(6));
}

// `hallmark --home HOME [global] init` for Acme Devices' Acme Widget, then `config` appended to the
// home's hallmark.toml.
inline void init_home(const std::string& home, const std::string& config, const std::string& global = {}) {
  const auto r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(home) + global +
                     " init --org 'Acme Devices' --product 'Acme Widget'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ofstream(home + "/hallmark.toml", std::ios::app) << config;
}

// ServeProcess::start, its error a fatal test failure (callers check HasFatalFailure()).
inline void start_serve(ServeProcess& serve, const std::string& home, const std::string& dir,
                        const std::vector<std::string>& global = {},
                        const std::vector<std::string>& args = {}, const std::string& cwd = {}) {
  const auto error = serve.start(home, dir, global, args, cwd);
  ASSERT_TRUE(error.empty()) << error;
}

// The store at `url` (e.g. "sqlite:HOME/hallmark.db"), migrated, for the test's own reads and devices;
// null, with a test failure, when it cannot be opened or migrated.
inline std::unique_ptr<store::Store> open_migrated_store(const std::string& url) {
  auto s = store::open_store(url);
  if (!s) {
    ADD_FAILURE() << s.error().detail;
    return nullptr;
  }
  if (!(*s)->migrate()) {
    ADD_FAILURE() << "cannot migrate " << url;
    return nullptr;
  }
  return std::move(*s);
}

// A device of the inventory, as the tests hold it.
struct Device {
  std::string unique_id;
  std::string ukid;
  std::string key;    // PEM file of the BC key
  std::string chain;  // PEM file: BC then the BC CA
  std::string bc_serial;
  store::Id id = 0;
};

// A birth certificate under the home's BC CA, imported (as a manifest would be) and, unless `mount`
// is false, mounted.
inline Device make_device(store::Store& store, const std::string& home, const std::string& dir,
                          bool mount = true) {
  Device d;
  d.unique_id = "01" + to_hex(crypto::random_bytes(8));
  auto ca_key = crypto::load_private_key(home + "/ca/bc/key.pem", "file:" + home + "/secrets/ca-passphrase");
  EXPECT_TRUE(ca_key) << ca_key.error().detail;
  auto ca_cert = x509::Certificate::load(home + "/ca/bc/cert.pem");
  EXPECT_TRUE(ca_cert);
  auto profile = ca::Profile::load(home + "/profiles/bc.toml");
  EXPECT_TRUE(profile) << profile.error().detail;
  const SystemClock clock;
  const ca::Issuer issuer(*ca_cert, std::make_shared<const crypto::FileSigner>(*ca_key, "bc"), clock);
  auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  auto bc = issuer.issue(
      ca::IssueRequest{key.public_key(), {{"org", "Acme Devices"}, {"hw_serial", d.unique_id}}, {}, {}},
      *profile);
  EXPECT_TRUE(bc) << bc.error().detail;
  d.ukid = bc->public_key().sha256_hex();
  d.bc_serial = bc->serial_hex();
  d.key = dir + "/" + d.unique_id + ".key";
  d.chain = dir + "/" + d.unique_id + ".chain.pem";
  EXPECT_TRUE(crypto::save_private_key(d.key, key));
  spit(d.chain, bc->to_pem() + ca_cert->to_pem());

  store::ManifestImport mi;
  mi.manifest.format = "hallmark";
  mi.manifest.signer = "test";
  mi.manifest.sha256 = to_hex(crypto::random_bytes(32));
  mi.manifest.entry_count = 1;
  mi.manifest.imported_at = clock.now();
  store::DeviceRecord r;
  r.vendor_unique_id = d.unique_id;
  r.ukid = d.ukid;
  r.bc_der = bc->to_der();
  r.bc_sha256 = bc->fingerprint_sha256_hex();
  r.bc_issuer = bc->issuer().to_string();
  mi.devices.push_back(r);
  mi.audit =
      store::AuditEvent{clock.now(), "test", "manifest-import", "test", store::Outcome::accepted, "", ""};
  EXPECT_TRUE(store.import_manifest(mi));
  d.id = store.find_device_by_unique_id(d.unique_id)->id;
  if (!mount) return d;
  inventory::MountRequest req;
  req.unique_id = d.unique_id;
  const auto out = inventory::mount_device(store, req, inventory::MountOptions{});
  EXPECT_EQ(out.status, inventory::MountStatus::mounted) << out.reason;
  return d;
}

// A curl answer.
struct Http {
  int status = 0;  // 0: no answer (connection refused, reset, timeout)
  std::string headers;
  std::string body;
  std::string output;  // curl's own messages
};

// curl with `args`; the body and the headers go to files in `dir`. Trusts the home's root.
inline Http curl(const std::string& home, const std::string& dir, const std::string& args,
                 int max_time = 30) {
  const auto body = dir + "/" + random_name("body-");
  const auto headers = body + ".h";
  const auto r = run("curl -sS --max-time " + std::to_string(max_time) + " --cacert " +
                     shell_quote(home + "/ca/root/cert.pem") + " -o " + shell_quote(body) + " -D " +
                     shell_quote(headers) + " -w '%{http_code}' " + args);
  Http h;
  h.output = r.output;
  h.body = slurp(body);
  h.headers = slurp(headers);
  const auto digits = r.output.size() >= 3 ? r.output.substr(r.output.size() - 3) : std::string();
  h.status = std::atoi(digits.c_str());
  std::error_code ec;
  std::filesystem::remove(body, ec);
  std::filesystem::remove(headers, ec);
  return h;
}

// A new P-256 key (openssl genpkey), PEM in a file in `dir`.
inline std::string new_key_file(const std::string& dir) {
  const auto path = dir + "/" + random_name("key-") + ".pem";
  EXPECT_EQ(run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + shell_quote(path))
                .exit_code,
            0);
  return path;
}

// `openssl req` CSR for `key_file`, base64 in a file.
inline std::string openssl_csr(const std::string& dir, const std::string& key_file,
                               const std::string& subject, const std::string& extra = {}) {
  const auto der = dir + "/" + random_name("csr-") + ".der";
  const auto r = run("openssl req -new -key " + shell_quote(key_file) + " -subj " + shell_quote(subject) +
                     " -outform DER -out " + shell_quote(der) + " " + extra);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto b64 = der + ".b64";
  EXPECT_EQ(run("openssl base64 -in " + shell_quote(der) + " -out " + shell_quote(b64)).exit_code, 0);
  return b64;
}

// curl's arguments to POST a base64 PKCS#10 file as an EST enrollment body.
inline std::string enroll_body_args(const std::string& b64_file) {
  return "-H 'Content-Type: application/pkcs10' --data-binary @" + shell_quote(b64_file);
}

// The certificates of a certs-only base64 body, as PEM (openssl pkcs7 -print_certs).
inline std::string certs_of(const std::string& dir, const std::string& body) {
  const auto b64 = dir + "/" + random_name("p7-") + ".b64";
  spit(b64, body);
  const auto r =
      run("openssl base64 -d -A -in " + shell_quote(b64) + " | openssl pkcs7 -inform DER -print_certs");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output;
}

// The first certificate of a certs-only base64 body.
inline x509::Certificate first_cert_of(const std::string& dir, const std::string& body) {
  auto c = x509::Certificate::parse_pem(certs_of(dir, body));
  EXPECT_TRUE(c) << (c ? "" : c.error().detail);
  return c ? *c : x509::Certificate{};
}

// An openssl config whose request carries the IDC's SAN (hardwareModuleName), for re-enrollment.
inline std::string renewal_config(const std::string& dir, const x509::Certificate& idc) {
  const auto san = idc.subject_alt_name();
  EXPECT_TRUE(san && san->names.size() == 1 && san->names[0].hardware_module_name);
  if (!san || san->names.empty() || !san->names[0].hardware_module_name) return {};
  const auto& hmn = *san->names[0].hardware_module_name;
  const auto conf = dir + "/" + random_name("reenroll-") + ".cnf";
  spit(conf,
       "[req]\ndistinguished_name = dn\nreq_extensions = ext\n[dn]\n[ext]\n"
       "subjectAltName = otherName:1.3.6.1.5.5.7.8.4;SEQUENCE:hmn\n[hmn]\nhwType = OID:" +
           hmn.hw_type + "\nhwSerialNum = FORMAT:HEX,OCTETSTRING:" + to_hex(hmn.hw_serial_num) + "\n");
  return conf;
}

// The value of header `name` (any case) in curl's -D output; empty when absent.
inline std::string header_value(const std::string& headers, const std::string& name) {
  std::string lower_headers = headers;
  std::string lower_name = name + ":";
  for (auto* s : {&lower_headers, &lower_name}) {
    for (auto& c : *s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  const auto at = lower_headers.find(lower_name);
  if (at == std::string::npos) return {};
  const auto begin = at + lower_name.size();
  auto value = headers.substr(begin, headers.find('\r', begin) - begin);
  while (!value.empty() && value.front() == ' ') value.erase(0, 1);
  return value;
}

}  // namespace hallmark::testing
