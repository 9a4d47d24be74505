// bench_issue: what one enrollment costs the CA, hallmark against a bare OpenSSL loop.
//
//   hallmark  CSR DER -> x509::Csr::parse_der -> ca::Issuer::issue (default idc profile, CRL DP and
//             AIA from a base URL) -> x509::make_pkcs7_certs_only
//   baseline  the same steps written directly against OpenSSL 3.0: d2i_X509_REQ, X509_REQ_verify, an
//             X509 with the same subject and extensions built with the typed APIs, X509_sign,
//             PKCS#7 certs-only with i2d_PKCS7
//
// Same CA (P-256 root -> P-256 IDC sub-CA), same P-256 device CSR. Both run as repetitions, randomly
// interleaved; the median CPU time per certificate of each and their ratio are printed at the end.
// Extra arguments are Google Benchmark flags (e.g. --benchmark_filter=hallmark).
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/core/bytes.hpp"
#include "hallmark/x509/builder.hpp"
#include "hallmark/x509/csr.hpp"

namespace {

using namespace hallmark;

constexpr const char* kSerial = "793cb7b370daa20f7fd3dc9e7d86111eeadb188af61befc0c74cfb871b701b25";  // a UKID
constexpr const char* kHwSerial = "0123F2408EA1FCF201";
constexpr const char* kProduct = "Example Widget";
constexpr const char* kOrganization = "Example OEM";
constexpr const char* kBaseUrl = "http://pki.example.com";

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_issue: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
T must(Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().detail);
  return std::move(*r);
}

void check(bool ok, const char* what) {
  if (!ok) die(std::string("OpenSSL: ") + what);
}

// The PKI both contenders use.
struct Pki {
  SystemClock clock;
  std::vector<ca::Profile> profiles;
  ca::Profile idc;
  std::shared_ptr<crypto::FileSigner> sub_signer;
  x509::Certificate root;
  x509::Certificate sub;
  std::unique_ptr<ca::Issuer> issuer;
  Bytes csr_der;

  Pki() {
    ca::DefaultProfileOptions options;
    options.organization = kOrganization;
    options.base_url = kBaseUrl;
    profiles = ca::default_profiles(options);
    auto find = [&](std::string_view name) -> ca::Profile {
      for (const auto& p : profiles) {
        if (p.name == name) return p;
      }
      die("no profile " + std::string(name));
    };
    idc = find("idc");
    // CAs without expiry, so the IDC keeps the 802.1AR notAfter (no clamping).
    ca::Profile root_profile = find("root");
    root_profile.lifetime = std::nullopt;
    ca::Profile sub_profile = find("sub-ca-idc");
    sub_profile.lifetime = std::nullopt;

    auto root_signer = std::make_shared<crypto::FileSigner>(
        must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "root key"), "bench:root");
    root = must(ca::issue_self_signed(*root_signer, {}, root_profile, clock), "root");
    ca::Issuer root_issuer(root, root_signer, clock);
    sub_signer = std::make_shared<crypto::FileSigner>(
        must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "sub key"), "bench:sub");
    sub = must(root_issuer.issue({sub_signer->public_key(), {}, {}, {}}, sub_profile), "sub-CA");
    issuer = std::make_unique<ca::Issuer>(sub, sub_signer, clock);

    crypto::FileSigner device(must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "device key"),
                              "bench:device");
    auto subject =
        must(x509::Name::make({{"serialNumber", kSerial}, {"O", kOrganization}, {"CN", kProduct}}), "name");
    csr_der = must(x509::make_csr(subject, device), "CSR").to_der();
  }
};

Pki& pki() {
  static Pki instance;
  return instance;
}

// ---- hallmark -------------------------------------------------------------------------------

Bytes hallmark_issue(const Pki& p) {
  auto csr = x509::Csr::parse_der(p.csr_der);
  if (!csr) die("parse CSR: " + csr.error().detail);
  ca::IssueRequest request{std::move(*csr),
                           {{"serial", kSerial}, {"hw_serial", kHwSerial}, {"product", kProduct}},
                           std::nullopt,
                           std::nullopt};
  auto cert = p.issuer->issue(request, p.idc);
  if (!cert) die("issue: " + cert.error().detail);
  return x509::make_pkcs7_certs_only({*cert});
}

void BM_hallmark(benchmark::State& state) {
  const Pki& p = pki();
  for (auto _ : state) {
    Bytes p7 = hallmark_issue(p);
    benchmark::DoNotOptimize(p7.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- bare OpenSSL -----------------------------------------------------------------------------

// What a careful hand-written OpenSSL program would set up once.
struct Baseline {
  X509* ca;
  EVP_PKEY* ca_key;
  ASN1_OBJECT* hmn_oid = OBJ_txt2obj("1.3.6.1.5.5.7.8.4", 1);
  std::vector<unsigned char> hw_type_der;  // the hwType OID, DER

  explicit Baseline(const Pki& p) : ca(p.sub.native()), ca_key(p.sub_signer->native_private_key()) {
    ASN1_OBJECT* hw_type = OBJ_txt2obj("1.3.6.1.4.1.55555.1.1", 1);
    check(hmn_oid != nullptr && hw_type != nullptr, "OIDs");
    int n = i2d_ASN1_OBJECT(hw_type, nullptr);
    hw_type_der.resize(static_cast<std::size_t>(n));
    unsigned char* out = hw_type_der.data();
    i2d_ASN1_OBJECT(hw_type, &out);
    ASN1_OBJECT_free(hw_type);
  }
  ~Baseline() { ASN1_OBJECT_free(hmn_oid); }
  Baseline(const Baseline&) = delete;
  Baseline& operator=(const Baseline&) = delete;
};

GENERAL_NAME* uri_name(const char* uri) {
  GENERAL_NAME* gen = GENERAL_NAME_new();
  ASN1_IA5STRING* s = ASN1_IA5STRING_new();
  check(gen != nullptr && s != nullptr && ASN1_STRING_set(s, uri, -1) == 1, "URI");
  GENERAL_NAME_set0_value(gen, GEN_URI, s);
  return gen;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

std::vector<unsigned char> baseline_issue(const Baseline& b, const Bytes& csr_der) {
  const auto* in = reinterpret_cast<const unsigned char*>(csr_der.data());
  X509_REQ* req = d2i_X509_REQ(nullptr, &in, static_cast<long>(csr_der.size()));
  check(req != nullptr, "d2i_X509_REQ");
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req);
  check(pub != nullptr && X509_REQ_verify(req, pub) == 1, "X509_REQ_verify");

  X509* x = X509_new();
  check(x != nullptr && X509_set_version(x, X509_VERSION_3) == 1, "X509_new");
  unsigned char serial[16];
  check(RAND_bytes(serial, sizeof serial) == 1, "RAND_bytes");
  serial[0] &= 0x7f;
  if (serial[0] == 0) serial[0] = 1;
  check(ASN1_STRING_set(X509_get_serialNumber(x), serial, sizeof serial) == 1, "serial");
  check(X509_set_issuer_name(x, X509_get_subject_name(b.ca)) == 1, "issuer");
  X509_NAME* name = X509_get_subject_name(x);
  check(
      X509_NAME_add_entry_by_NID(name, NID_serialNumber, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(kSerial), -1, -1, 0) == 1 &&
          X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(kOrganization), -1, -1, 0) == 1 &&
          X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(kProduct), -1, -1, 0) == 1,
      "subject");
  check(X509_gmtime_adj(X509_getm_notBefore(x), -300) != nullptr &&
            ASN1_TIME_set_string(X509_getm_notAfter(x), "99991231235959Z") == 1,
        "validity");
  check(X509_set_pubkey(x, pub) == 1, "X509_set_pubkey");

  BASIC_CONSTRAINTS* bc = BASIC_CONSTRAINTS_new();
  bc->ca = 0;
  check(X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_APPEND) == 1, "basicConstraints");
  BASIC_CONSTRAINTS_free(bc);

  ASN1_BIT_STRING* ku = ASN1_BIT_STRING_new();
  check(ASN1_BIT_STRING_set_bit(ku, 0, 1) == 1 && ASN1_BIT_STRING_set_bit(ku, 4, 1) == 1, "keyUsage bits");
  check(X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_APPEND) == 1, "keyUsage");
  ASN1_BIT_STRING_free(ku);

  EXTENDED_KEY_USAGE* eku = sk_ASN1_OBJECT_new_null();
  sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth));
  check(X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_APPEND) == 1, "extendedKeyUsage");
  sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);

  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  check(X509_pubkey_digest(x, EVP_sha1(), md, &md_len) == 1, "SKI digest");
  ASN1_OCTET_STRING* ski = ASN1_OCTET_STRING_new();
  check(ASN1_OCTET_STRING_set(ski, md, static_cast<int>(md_len)) == 1, "SKI");
  check(X509_add1_ext_i2d(x, NID_subject_key_identifier, ski, 0, X509V3_ADD_APPEND) == 1, "SKI ext");
  ASN1_OCTET_STRING_free(ski);

  AUTHORITY_KEYID* akid = AUTHORITY_KEYID_new();
  akid->keyid = ASN1_OCTET_STRING_dup(X509_get0_subject_key_id(b.ca));
  check(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_APPEND) == 1, "AKI");
  AUTHORITY_KEYID_free(akid);

  // SAN otherName hardwareModuleName { hwType, hwSerialNum }, assembled as DER.
  std::vector<unsigned char> hw_serial;
  for (const char* c = kHwSerial; *c != 0; c += 2) {
    hw_serial.push_back(static_cast<unsigned char>(hex_value(c[0]) << 4 | hex_value(c[1])));
  }
  std::vector<unsigned char> hmn{0x30, 0};
  hmn.insert(hmn.end(), b.hw_type_der.begin(), b.hw_type_der.end());
  hmn.push_back(0x04);
  hmn.push_back(static_cast<unsigned char>(hw_serial.size()));
  hmn.insert(hmn.end(), hw_serial.begin(), hw_serial.end());
  hmn[1] = static_cast<unsigned char>(hmn.size() - 2);
  ASN1_STRING* seq = ASN1_STRING_new();
  check(ASN1_STRING_set(seq, hmn.data(), static_cast<int>(hmn.size())) == 1, "HMN");
  ASN1_TYPE* value = ASN1_TYPE_new();
  ASN1_TYPE_set(value, V_ASN1_SEQUENCE, seq);
  GENERAL_NAME* other = GENERAL_NAME_new();
  check(GENERAL_NAME_set0_othername(other, OBJ_dup(b.hmn_oid), value) == 1, "otherName");
  GENERAL_NAMES* san = sk_GENERAL_NAME_new_null();
  sk_GENERAL_NAME_push(san, other);
  check(X509_add1_ext_i2d(x, NID_subject_alt_name, san, 0, X509V3_ADD_APPEND) == 1, "SAN");
  GENERAL_NAMES_free(san);

  CRL_DIST_POINTS* dps = sk_DIST_POINT_new_null();
  DIST_POINT* dp = DIST_POINT_new();
  dp->distpoint = DIST_POINT_NAME_new();
  dp->distpoint->type = 0;
  dp->distpoint->name.fullname = sk_GENERAL_NAME_new_null();
  sk_GENERAL_NAME_push(dp->distpoint->name.fullname, uri_name("http://pki.example.com/crl/idc.crl"));
  sk_DIST_POINT_push(dps, dp);
  check(X509_add1_ext_i2d(x, NID_crl_distribution_points, dps, 0, X509V3_ADD_APPEND) == 1, "CRL DP");
  CRL_DIST_POINTS_free(dps);

  AUTHORITY_INFO_ACCESS* aia = sk_ACCESS_DESCRIPTION_new_null();
  for (auto [method, uri] : {std::pair{NID_ad_OCSP, "http://pki.example.com/ocsp"},
                             std::pair{NID_ad_ca_issuers, "http://pki.example.com/ca/idc.crt"}}) {
    ACCESS_DESCRIPTION* ad = ACCESS_DESCRIPTION_new();
    ASN1_OBJECT_free(ad->method);
    ad->method = OBJ_nid2obj(method);
    GENERAL_NAME_free(ad->location);
    ad->location = uri_name(uri);
    sk_ACCESS_DESCRIPTION_push(aia, ad);
  }
  check(X509_add1_ext_i2d(x, NID_info_access, aia, 0, X509V3_ADD_APPEND) == 1, "AIA");
  AUTHORITY_INFO_ACCESS_free(aia);

  check(X509_sign(x, b.ca_key, EVP_sha256()) > 0, "X509_sign");

  PKCS7* p7 = PKCS7_new();
  check(p7 != nullptr && PKCS7_set_type(p7, NID_pkcs7_signed) == 1 &&
            PKCS7_content_new(p7, NID_pkcs7_data) == 1 && PKCS7_add_certificate(p7, x) == 1,
        "PKCS7");
  unsigned char* der = nullptr;
  int len = i2d_PKCS7(p7, &der);
  check(len > 0, "i2d_PKCS7");
  std::vector<unsigned char> out(der, der + len);
  OPENSSL_free(der);
  PKCS7_free(p7);
  X509_free(x);
  X509_REQ_free(req);
  return out;
}

void BM_baseline(benchmark::State& state) {
  const Pki& p = pki();
  static const Baseline b(p);
  for (auto _ : state) {
    auto p7 = baseline_issue(b, p.csr_der);
    benchmark::DoNotOptimize(p7.data());
  }
  state.SetItemsProcessed(state.iterations());
}

// Both must make the same certificate (bar serial, times, signature): otherwise the race is unfair.
void check_same_shape(const Pki& p) {
  auto mine = must(x509::parse_pkcs7_certs_only(hallmark_issue(p)), "hallmark PKCS#7");
  Baseline b(p);
  auto bytes = baseline_issue(b, p.csr_der);
  auto theirs = must(
      x509::parse_pkcs7_certs_only(ByteView(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size())),
      "baseline PKCS#7");
  if (mine.size() != 1 || theirs.size() != 1) die("PKCS#7: expected one certificate each");
  const auto& a = mine[0];
  const auto& c = theirs[0];
  bool same = a.subject() == c.subject() && a.issuer() == c.issuer() && a.not_after() == c.not_after() &&
              a.basic_constraints() == c.basic_constraints() && a.key_usage() == c.key_usage() &&
              a.extended_key_usage() == c.extended_key_usage() &&
              a.subject_alt_name() == c.subject_alt_name() && a.subject_key_id() == c.subject_key_id() &&
              a.authority_key_id() == c.authority_key_id() &&
              a.crl_distribution_points() == c.crl_distribution_points() &&
              a.authority_info_access() == c.authority_info_access() && a.public_key() == c.public_key();
  if (!same) die("hallmark and baseline certificates differ:\n" + a.describe() + "\n---\n" + c.describe());
  std::printf("certificate: hallmark %zu bytes, baseline %zu bytes (same subject and extensions)\n",
              a.to_der().size(), c.to_der().size());
}

// Keeps the per-repetition CPU time of each benchmark while printing as usual.
class Recorder final : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type == Run::RT_Iteration && !run.error_occurred && run.iterations > 0) {
        // seconds per iteration -> microseconds
        double us = run.cpu_accumulated_time / static_cast<double>(run.iterations) * 1e6;
        times_[run.run_name.function_name].push_back(us);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
  [[nodiscard]] std::optional<double> median(const std::string& name) const {
    auto it = times_.find(name);
    if (it == times_.end() || it->second.empty()) return std::nullopt;
    auto v = it->second;
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }

 private:
  std::map<std::string, std::vector<double>> times_;
};

}  // namespace

int main(int argc, char** argv) {
  // Defaults first, so flags given on the command line win.
  std::vector<char*> args{argv[0]};
  std::string repetitions = "--benchmark_repetitions=5";
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  std::string min_time = "--benchmark_min_time=0.5";
  args.push_back(repetitions.data());
  args.push_back(interleave.data());
  args.push_back(min_time.data());
  for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;

  check_same_shape(pki());
  benchmark::RegisterBenchmark("issue/hallmark", BM_hallmark)->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("issue/baseline", BM_baseline)->Unit(benchmark::kMicrosecond);
  Recorder recorder;
  benchmark::RunSpecifiedBenchmarks(&recorder);
  benchmark::Shutdown();

  auto h = recorder.median("issue/hallmark");
  auto b = recorder.median("issue/baseline");
  if (h) std::printf("hallmark: %.1f us/certificate (median CPU time)\n", *h);
  if (b) std::printf("baseline: %.1f us/certificate (median CPU time)\n", *b);
  if (h && b) {
    double ratio = *h / *b;
    std::printf("ratio: %.2f (target <= 1.20)\n", ratio);
    return ratio <= 1.20 ? 0 : 3;
  }
  return 0;
}
