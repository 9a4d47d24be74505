#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/builder.hpp"

namespace hallmark::ca {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kVectors = HALLMARK_SHARED_DIR "/vectors/idc-8021ar/";
constexpr const char* kBaseUrl = "http://pki.example.com";
constexpr const char* kHwSerial = "0123F2408EA1FCF201";

// The reference IDC's SAN extension value (vectors/idc-8021ar/idc.pem, made by the openssl CLI):
// hardwareModuleName {1.3.6.1.4.1.55555.1.1, 0123F2408EA1FCF201}.
constexpr const char* kReferenceSanHex =
    "3027A02506082B06010505070804A0193017060A2B0601040183B203010104090123F2408EA1FCF201";

std::string slurp(const std::string& path) {
  auto text = read_text_file(path);
  EXPECT_TRUE(text) << path << ": " << (text ? "" : text.error().detail);
  return text ? *text : std::string();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// A temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "hallmark-ca-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] std::string operator/(std::string_view name) const { return (path_ / name).string(); }
  [[nodiscard]] std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

void write(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

struct Run {
  int status = -1;
  std::string output;
};

// Runs a shell command (stderr folded into stdout) with tools nobody here wrote.
Run run(const std::string& command) {
  Run r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), n);
  int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const Profile& find_profile(const std::vector<Profile>& profiles, std::string_view name) {
  for (const auto& p : profiles) {
    if (p.name == name) return p;
  }
  ADD_FAILURE() << "no profile " << name;
  std::abort();
}

std::shared_ptr<crypto::FileSigner> make_signer(crypto::KeyType type, std::string reference) {
  auto key = crypto::PrivateKey::generate(type);
  if (!key) {
    ADD_FAILURE() << key.error().detail;
    std::abort();
  }
  return std::make_shared<crypto::FileSigner>(*key, std::move(reference));
}

x509::Csr load_csr(const std::string& path) {
  auto csr = x509::Csr::parse(to_bytes(slurp(path)));
  if (!csr) {
    ADD_FAILURE() << path << ": " << csr.error().detail;
    std::abort();
  }
  return *csr;
}

// ---------------------------------------------------------------------------------------------
// Profiles as data

TEST(Profile, DefaultsRoundTripThroughToml) {
  for (const auto& base_url : {std::string(), std::string(kBaseUrl)}) {
    DefaultProfileOptions options;
    options.base_url = base_url;
    options.organization = "Example \"Quoted\" OEM \\ GmbH";
    auto profiles = default_profiles(options);
    ASSERT_EQ(profiles.size(), 12u);
    for (const auto& profile : profiles) {
      std::string text = profile.to_toml();
      auto parsed = Profile::parse_toml(text, "profiles/" + profile.name + ".toml");
      ASSERT_TRUE(parsed) << parsed.error().detail << "\n" << text;
      EXPECT_EQ(*parsed, profile) << text;
      EXPECT_EQ(parsed->to_toml(), text);
    }
  }
}

TEST(Profile, DefaultSetIsComplete) {
  DefaultProfileOptions options;
  options.base_url = "http://pki.example.com/";
  auto profiles = default_profiles(options);
  std::set<std::string> names;
  for (const auto& p : profiles) names.insert(p.name);
  EXPECT_EQ(names, (std::set<std::string>{"root", "sub-ca-bc", "sub-ca-idc", "sub-ca-tls", "sub-ca-ocsp",
                                          "sub-ca-manifest-signer", "bc", "idc", "tls-server", "proxy-client",
                                          "ocsp-responder", "manifest-signer"}));
  // every CA role but root has its sub-CA profile
  for (std::string_view role : kCaRoles) {
    if (role != "root") {
      EXPECT_TRUE(names.contains("sub-ca-" + std::string(role))) << role;
    }
  }

  const Profile& root = find_profile(profiles, "root");
  EXPECT_EQ(root.kind, ProfileKind::root);
  EXPECT_FALSE(root.lifetime);  // permanent identities need a permanent chain
  EXPECT_EQ(root.basic_constraints, (x509::BasicConstraints{true, std::nullopt, true}));
  EXPECT_EQ(root.key_usage, (x509::KeyUsage{x509::kKeyCertSign | x509::kCrlSign, true}));

  const Profile& sub = find_profile(profiles, "sub-ca-idc");
  EXPECT_EQ(sub.kind, ProfileKind::sub_ca);
  EXPECT_FALSE(sub.lifetime);
  EXPECT_EQ(sub.basic_constraints, (x509::BasicConstraints{true, 0, true}));
  EXPECT_FALSE(find_profile(profiles, "sub-ca-bc").lifetime);
  EXPECT_EQ(find_profile(profiles, "sub-ca-tls").lifetime, std::chrono::seconds(std::chrono::days(15 * 365)));

  const Profile& idc = find_profile(profiles, "idc");
  EXPECT_EQ(idc.kind, ProfileKind::end_entity);
  EXPECT_FALSE(idc.lifetime);
  ASSERT_EQ(idc.subject.size(), 3u);
  EXPECT_EQ(idc.subject[0], (SubjectRule{"serialNumber", "{serial}", true}));
  EXPECT_EQ(idc.subject[1], (SubjectRule{"O", "{org}", true}));
  EXPECT_EQ(idc.subject[2], (SubjectRule{"CN", "{product}", true}));
  EXPECT_EQ(idc.variables.at("org"), "Example OEM");
  EXPECT_EQ(idc.hardware_module_name_type, "1.3.6.1.4.1.55555.1.1");
  EXPECT_TRUE(idc.key_agreement_for_ec);
  EXPECT_EQ(idc.crl_distribution_points, std::vector<std::string>{"http://pki.example.com/crl/idc.crl"});
  EXPECT_EQ(idc.ocsp_urls, std::vector<std::string>{"http://pki.example.com/ocsp"});
  EXPECT_EQ(idc.ca_issuers_urls, std::vector<std::string>{"http://pki.example.com/ca/idc.crt"});

  const Profile& manifest = find_profile(profiles, "manifest-signer");
  EXPECT_EQ(manifest.kind, ProfileKind::end_entity);
  EXPECT_EQ(manifest.key_policy.curves, std::vector<std::string>{"P-256"});
}

TEST(Profile, ParsesAHandWrittenProfile) {
  auto p = Profile::parse_toml(R"(
name = "widget"
kind = "end-entity"
lifetime = "365d"
backdate = "1h"
key_usage = ["digitalSignature", "contentCommitment"]
extended_key_usage = ["clientAuth", "1.2.3.4"]
san_dns = ["{host}", "www.{host}"]

[[subject]]
type = "CN"
value = "{host}"

[[subject]]
type = "2.5.4.5"
value = "{serial}"
required = false
)",
                               "profiles/widget.toml");
  ASSERT_TRUE(p) << p.error().detail;
  EXPECT_EQ(p->lifetime, std::chrono::seconds(std::chrono::days(365)));
  EXPECT_EQ(p->backdate, 1h);
  EXPECT_EQ(p->key_usage->bits, x509::kDigitalSignature | x509::kNonRepudiation);
  EXPECT_EQ(p->extended_key_usage->oids, (std::vector<std::string>{"1.3.6.1.5.5.7.3.2", "1.2.3.4"}));
  ASSERT_EQ(p->subject.size(), 2u);
  EXPECT_FALSE(p->subject[1].required);
  EXPECT_EQ(p->to_toml().find("lifetime = \"1y\"") != std::string::npos, true);
}

constexpr const char* kMinimal = R"(name = "idc"
kind = "end-entity"
lifetime = "forever"
subject = [{ type = "CN", value = "{product}" }]
)";

TEST(Profile, ValidationErrorsAreExact) {
  struct Case {
    std::string toml;
    std::string message;
  };
  const std::string m = kMinimal;
  const std::vector<Case> cases = {
      {R"(name = "idc"
kind = "leaf"
lifetime = "forever"
)",
       "profiles/idc.toml: kind must be one of root, sub-ca, end-entity (got 'leaf')"},
      {m + "lifetme = \"1y\"\n", "profiles/idc.toml: unknown key 'lifetme'"},
      {m + "[key_policy]\ncurve = [\"P-256\"]\n", "profiles/idc.toml: unknown key 'key_policy.curve'"},
      {m + "[basic_constraints]\ncaa = true\n", "profiles/idc.toml: unknown key 'basic_constraints.caa'"},
      {R"(name = "idc"
kind = "end-entity"
lifetime = "forever"
subject = [{ typ = "CN", value = "x" }]
)",
       "profiles/idc.toml: unknown key 'subject[0].typ'"},
      {"kind = \"end-entity\"\nlifetime = \"forever\"\n", "profiles/idc.toml: name is required"},
      {"name = \"idc\"\nlifetime = \"forever\"\n",
       "profiles/idc.toml: kind is required (root, sub-ca or end-entity)"},
      {"name = \"id c\"\nkind = \"root\"\n",
       "profiles/idc.toml: name must be letters, digits, '-', '_' or '.' (got 'id c')"},
      {"name = \"idc\"\nkind = \"end-entity\"\nsubject = [{ type = \"CN\", value = \"x\" }]\n",
       "profiles/idc.toml: lifetime is required (\"forever\" or a duration like \"825d\", \"24h\" or "
       "\"25y\")"},
      {"name = \"idc\"\nkind = \"end-entity\"\nlifetime = \"10x\"\n",
       "profiles/idc.toml: lifetime must be \"forever\" or a duration like \"825d\", \"24h\" or \"25y\" (got "
       "'10x')"},
      {"name = \"idc\"\nkind = \"end-entity\"\nlifetime = \"0d\"\n",
       "profiles/idc.toml: lifetime must be \"forever\" or a duration like \"825d\", \"24h\" or \"25y\" (got "
       "'0d')"},
      {"name = \"idc\"\nkind = \"end-entity\"\nlifetime = 42\n",
       "profiles/idc.toml: lifetime must be a string (got an integer)"},
      {m + "backdate = \"soon\"\n",
       "profiles/idc.toml: backdate must be a duration like \"5m\", \"1h\" or \"0s\" (got 'soon')"},
      {R"(name = "idc"
kind = "end-entity"
lifetime = "forever"
subject = [{ type = "XX", value = "x" }]
)",
       "profiles/idc.toml: subject[0].type must be one of CN, O, OU, C, L, ST, serialNumber, emailAddress, "
       "UID, DC "
       "or a dotted OID (got 'XX')"},
      {R"(name = "idc"
kind = "end-entity"
lifetime = "forever"
subject = [{ type = "CN" }]
)",
       "profiles/idc.toml: subject[0].value is required"},
      {R"(name = "idc"
kind = "end-entity"
lifetime = "forever"
subject = [{ type = "serialNumber", value = "{serial" }]
)",
       "profiles/idc.toml: subject[0].value: bad template '{serial' (unclosed '{')"},
      {m + "san_dns = [\"{Host}\"]\n",
       "profiles/idc.toml: san_dns[0]: bad template '{Host}' (variable names are lowercase letters, digits "
       "and "
       "'_')"},
      {"name = \"idc\"\nkind = \"end-entity\"\nlifetime = \"forever\"\n",
       "profiles/idc.toml: subject must not be empty unless the profile sets a subject alternative name"},
      {m + "[key_policy]\ncurves = [\"P-999\"]\n",
       "profiles/idc.toml: key_policy.curves: unknown curve 'P-999' (known: P-256, P-384, P-521)"},
      {m + "[key_policy]\nmin_rsa_bits = 512\n",
       "profiles/idc.toml: key_policy.min_rsa_bits must be 0 (no RSA) or 1024-16384 (got 512)"},
      {m + "[key_policy]\nmin_rsa_bits = 4096\nmax_rsa_bits = 2048\n",
       "profiles/idc.toml: key_policy.max_rsa_bits (2048) is less than key_policy.min_rsa_bits (4096)"},
      {m + "[key_policy]\ncurves = []\nallow_ed25519 = false\nmin_rsa_bits = 0\n",
       "profiles/idc.toml: key_policy allows no key at all"},
      {m + "[key_policy]\nallow_ed25519 = \"yes\"\n",
       "profiles/idc.toml: key_policy.allow_ed25519 must be true or false (got a string)"},
      {m + "key_usage = [\"digitalSig\"]\n",
       "profiles/idc.toml: key_usage: unknown usage 'digitalSig' (known: digitalSignature, nonRepudiation, "
       "keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly)"},
      {m + "key_usage = []\n",
       "profiles/idc.toml: key_usage must not be empty (leave it out for no Key Usage extension)"},
      {m + "key_usage = \"digitalSignature\"\n",
       "profiles/idc.toml: key_usage must be an array of strings (got a string)"},
      {m + "key_usage = [\"digitalSignature\", 3]\n",
       "profiles/idc.toml: key_usage[1] must be a string (got an integer)"},
      {m + "key_agreement_for_ec = true\n", "profiles/idc.toml: key_agreement_for_ec needs key_usage"},
      {m + "extended_key_usage = [\"clientAuthx\"]\n",
       "profiles/idc.toml: extended_key_usage: unknown usage 'clientAuthx' (known: serverAuth, clientAuth, "
       "codeSigning, emailProtection, timeStamping, OCSPSigning, documentSigning, or a dotted OID)"},
      {m + "hardware_module_name_type = \"widget\"\n",
       "profiles/idc.toml: hardware_module_name_type must be a dotted OID like 1.3.6.1.4.1.55555.1.1 (got "
       "'widget')"},
      {m + "crl_distribution_points = [\"pki.example.com/crl\"]\n",
       "profiles/idc.toml: crl_distribution_points[0] must be a URL like http://pki.example.com/... (got "
       "'pki.example.com/crl')"},
      {m + "certificate_policies = [\"2.23.140.1.2.1\", \"any\"]\n",
       "profiles/idc.toml: certificate_policies[1] must be a dotted OID (got 'any')"},
      {m + "ocsp_no_check = true\n", "profiles/idc.toml: ocsp_no_check needs extended_key_usage OCSPSigning"},
      {m + "[basic_constraints]\nca = true\n",
       "profiles/idc.toml: basic_constraints.ca must be false for kind end-entity"},
      {m + "[basic_constraints]\npath_length = 1\n",
       "profiles/idc.toml: basic_constraints.path_length needs basic_constraints.ca = true"},
      {m + "key_usage = [\"digitalSignature\", \"keyCertSign\"]\n",
       "profiles/idc.toml: key_usage must not include keyCertSign or cRLSign for kind end-entity"},
      {R"(name = "sub"
kind = "sub-ca"
lifetime = "15y"
subject = [{ type = "CN", value = "Sub" }]
key_usage = ["keyCertSign"]
)",
       "profiles/idc.toml: basic_constraints.ca must be true for kind sub-ca"},
      {R"(name = "sub"
kind = "sub-ca"
lifetime = "15y"
subject = [{ type = "CN", value = "Sub" }]
[basic_constraints]
ca = true
path_length = -1
)",
       "profiles/idc.toml: basic_constraints.path_length must be 0-255 (got -1)"},
      {R"(name = "root"
kind = "root"
lifetime = "15y"
subject = [{ type = "CN", value = "Root" }]
key_usage = ["digitalSignature"]
[basic_constraints]
ca = true
)",
       "profiles/idc.toml: key_usage must include keyCertSign for kind root"},
      {m + "[variables]\nOrg = \"x\"\n",
       "profiles/idc.toml: variables.Org: variable names are lowercase letters, digits and '_'"},
      {m + "variables = { org = 1 }\n", "profiles/idc.toml: variables.org must be a string (got an integer)"},
  };
  for (const auto& c : cases) {
    auto p = Profile::parse_toml(c.toml, "profiles/idc.toml");
    ASSERT_FALSE(p) << c.toml;
    EXPECT_EQ(p.error().code, Errc::invalid_input);
    EXPECT_EQ(p.error().detail, c.message) << c.toml;
  }
}

TEST(Profile, SyntaxErrorsNameLineAndColumn) {
  auto p = Profile::parse_toml("name = \"idc\"\nkind = \n", "profiles/idc.toml");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Errc::invalid_input);
  EXPECT_EQ(p.error().detail,
            "profiles/idc.toml:2:8: Error while parsing key-value pair: expected value, saw '\\n'");

  p = Profile::parse_toml("name = \"idc\"\nname = \"again\"\n", "profiles/idc.toml");
  ASSERT_FALSE(p);
  EXPECT_EQ(
      p.error().detail,
      "profiles/idc.toml:2:8: Error while parsing key-value pair: cannot redefine existing string 'name'");
}

TEST(Profile, LoadNamesTheFile) {
  TempDir dir;
  const std::string path = dir / "idc.toml";
  write(path, std::string(kMinimal) + "lifetme = \"1y\"\n");
  auto p = Profile::load(path);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().detail, path + ": unknown key 'lifetme'");

  write(path, kMinimal);
  p = Profile::load(path);
  ASSERT_TRUE(p) << p.error().detail;
  EXPECT_EQ(p->name, "idc");

  EXPECT_FALSE(Profile::load(dir / "missing.toml"));
}

TEST(KeyPolicy, ErrorsAreExact) {
  const auto profiles = default_profiles({});
  const Profile& idc = find_profile(profiles, "idc");
  using Algorithm = crypto::KeyInfo::Algorithm;

  EXPECT_TRUE(check_key_policy(idc, {Algorithm::ec, "P-256", 256}));
  EXPECT_TRUE(check_key_policy(idc, {Algorithm::ec, "P-384", 384}));
  EXPECT_TRUE(check_key_policy(idc, {Algorithm::ed25519, "", 256}));
  EXPECT_TRUE(check_key_policy(idc, {Algorithm::rsa, "", 2048}));
  EXPECT_TRUE(check_key_policy(idc, {Algorithm::rsa, "", 4096}));

  auto s = check_key_policy(idc, {Algorithm::ec, "P-521", 521});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::forbidden);
  EXPECT_EQ(s.error().detail,
            "profile idc does not allow EC P-521 keys (allowed: EC P-256, EC P-384, Ed25519, RSA 2048-4096)");

  s = check_key_policy(idc, {Algorithm::rsa, "", 1024});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::forbidden);
  EXPECT_EQ(s.error().detail, "profile idc does not allow RSA 1024 keys (minimum 2048 bits)");

  s = check_key_policy(idc, {Algorithm::rsa, "", 8192});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().detail, "profile idc does not allow RSA 8192 keys (maximum 4096 bits)");

  const Profile& manifest = find_profile(profiles, "manifest-signer");
  s = check_key_policy(manifest, {Algorithm::rsa, "", 2048});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().detail, "profile manifest-signer does not allow RSA 2048 keys (allowed: EC P-256)");
  s = check_key_policy(manifest, {Algorithm::ed25519, "", 256});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().detail, "profile manifest-signer does not allow Ed25519 keys (allowed: EC P-256)");
  s = check_key_policy(manifest, {Algorithm::ec, "secp256k1", 256});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().detail, "profile manifest-signer does not allow EC secp256k1 keys (allowed: EC P-256)");

  Profile fixed = idc;
  fixed.key_policy = KeyPolicy{{}, false, 3072, 3072};
  s = check_key_policy(fixed, {Algorithm::ec, "P-256", 256});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().detail, "profile idc does not allow EC P-256 keys (allowed: RSA 3072)");
}

// ---------------------------------------------------------------------------------------------
// Issuing

// root -> sub-ca-idc, both without expiry (so an IDC keeps 99991231235959Z; see the clamp test).
class IssuerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DefaultProfileOptions options;
    options.base_url = kBaseUrl;
    profiles_ = default_profiles(options);
    idc_ = find_profile(profiles_, "idc");

    Profile root_profile = find_profile(profiles_, "root");
    root_profile.lifetime = std::nullopt;
    root_signer_ = make_signer(crypto::KeyType::ec_p256, "test:root");
    auto root = issue_self_signed(*root_signer_, {}, root_profile, clock_);
    ASSERT_TRUE(root) << root.error().detail;
    root_ = *root;
    root_issuer_.emplace(root_, root_signer_, clock_);

    Profile sub_profile = find_profile(profiles_, "sub-ca-idc");
    sub_profile.lifetime = std::nullopt;
    sub_signer_ = make_signer(crypto::KeyType::ec_p256, "test:sub");
    auto sub = root_issuer_->issue({sub_signer_->public_key(), {}, {}, {}}, sub_profile);
    ASSERT_TRUE(sub) << sub.error().detail;
    sub_ = *sub;
    idc_issuer_.emplace(sub_, sub_signer_, clock_);
  }

  IssueRequest idc_request(x509::Csr csr) const {
    return {
        std::move(csr), {{"serial", ukid()}, {"hw_serial", kHwSerial}, {"product", "Widget 2000"}}, {}, {}};
  }
  std::string ukid() const { return trim(slurp(kVectors + "bc.ukid")); }

  FixedClock clock_{std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now())};
  std::vector<Profile> profiles_;
  Profile idc_;
  std::shared_ptr<crypto::FileSigner> root_signer_, sub_signer_;
  x509::Certificate root_, sub_;
  std::optional<Issuer> root_issuer_, idc_issuer_;
};

TEST_F(IssuerTest, RootAndSubCaFollowTheirProfiles) {
  EXPECT_TRUE(root_.is_self_issued());
  EXPECT_TRUE(root_.verify_signature(root_.public_key()));
  EXPECT_EQ(root_.subject().to_string(), "O=Example OEM,CN=Example OEM Root CA");
  EXPECT_EQ(root_.basic_constraints(), (x509::BasicConstraints{true, std::nullopt, true}));
  EXPECT_EQ(root_.key_usage(), (x509::KeyUsage{x509::kKeyCertSign | x509::kCrlSign, true}));
  EXPECT_EQ(root_.not_before(), clock_.now() - 5min);

  EXPECT_EQ(sub_.subject().to_string(), "O=Example OEM,CN=Example OEM IDC CA");
  EXPECT_EQ(sub_.issuer(), root_.subject());
  EXPECT_TRUE(sub_.verify_signature(root_.public_key()));
  EXPECT_EQ(sub_.basic_constraints(), (x509::BasicConstraints{true, 0, true}));
  EXPECT_EQ(sub_.crl_distribution_points(),
            (x509::CrlDistributionPoints{{"http://pki.example.com/crl/root.crl"}}));

  // a root profile is only for issue_self_signed, and the CA with pathLen 0 issues no CA
  auto r = idc_issuer_->issue({sub_signer_->public_key(), {}, {}, {}}, find_profile(profiles_, "root"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_input);
  r = idc_issuer_->issue({sub_signer_->public_key(), {}, {}, {}}, find_profile(profiles_, "sub-ca-idc"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::forbidden);
  EXPECT_EQ(
      r.error().detail,
      "profile sub-ca-idc: issuing CA O=Example OEM,CN=Example OEM IDC CA has path length 0 and cannot issue "
      "CA certificates");
}

TEST_F(IssuerTest, IdcFromTheReferenceCsrIsAn8021arIdevid) {
  auto idc = idc_issuer_->issue(idc_request(load_csr(kVectors + "idc.csr")), idc_);
  ASSERT_TRUE(idc) << idc.error().detail;

  // Subject is exactly serialNumber / O / CN from the profile, in that order.
  auto attributes = idc->subject().attributes();
  ASSERT_EQ(attributes.size(), 3u);
  EXPECT_EQ(attributes[0].type, "serialNumber");
  EXPECT_EQ(attributes[0].value, ukid());
  EXPECT_EQ(attributes[1].type, "O");
  EXPECT_EQ(attributes[1].value, "Example OEM");
  EXPECT_EQ(attributes[2].type, "CN");
  EXPECT_EQ(attributes[2].value, "Widget 2000");

  auto hw = parse_hex(kHwSerial);
  ASSERT_TRUE(hw);
  EXPECT_EQ(idc->subject_alt_name(),
            (x509::SubjectAltName{{x509::GeneralName::hmn({"1.3.6.1.4.1.55555.1.1", *hw})}, false}));
  EXPECT_EQ(idc->key_usage(), (x509::KeyUsage{x509::kDigitalSignature | x509::kKeyAgreement, true}));
  EXPECT_EQ(idc->extended_key_usage(), (x509::ExtendedKeyUsage{{x509::kOidClientAuth}, false}));
  EXPECT_EQ(idc->basic_constraints(), (x509::BasicConstraints{false, std::nullopt, true}));
  EXPECT_TRUE(idc->has_no_expiry());
  EXPECT_EQ(idc->not_before(), clock_.now() - 5min);
  EXPECT_EQ(idc->crl_distribution_points(),
            (x509::CrlDistributionPoints{{"http://pki.example.com/crl/idc.crl"}}));
  EXPECT_EQ(idc->authority_info_access(), (x509::AuthorityInfoAccess{{"http://pki.example.com/ocsp"},
                                                                     {"http://pki.example.com/ca/idc.crt"}}));
  EXPECT_EQ(idc->authority_key_id(), sub_.subject_key_id());
  EXPECT_EQ(idc->public_key(), load_csr(kVectors + "idc.csr").public_key());

  // Checked by tools nobody here wrote.
  TempDir dir;
  write(dir / "root.pem", root_.to_pem());
  write(dir / "sub.pem", sub_.to_pem());
  write(dir / "idc.pem", idc->to_pem());
  auto verify = run("cd '" + dir.str() + "' && openssl verify -CAfile root.pem -untrusted sub.pem idc.pem");
  EXPECT_EQ(verify.status, 0) << verify.output;
  EXPECT_EQ(verify.output, "idc.pem: OK\n");

  auto text = run("openssl x509 -noout -text -in '" + (dir / "idc.pem") + "'");
  ASSERT_EQ(text.status, 0) << text.output;
  EXPECT_NE(text.output.find("Subject: serialNumber = " + ukid() + ", O = Example OEM, CN = Widget 2000\n"),
            std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("othername: 1.3.6.1.5.5.7.8.4::<unsupported>"), std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("TLS Web Client Authentication"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Digital Signature, Key Agreement"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("CA:FALSE"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("URI:http://pki.example.com/crl/idc.crl"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("OCSP - URI:http://pki.example.com/ocsp"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("CA Issuers - URI:http://pki.example.com/ca/idc.crt"), std::string::npos)
      << text.output;

  auto asn1 = run("openssl asn1parse -in '" + (dir / "idc.pem") + "'");
  ASSERT_EQ(asn1.status, 0) << asn1.output;
  EXPECT_NE(asn1.output.find("GENERALIZEDTIME   :99991231235959Z"), std::string::npos) << asn1.output;
  // Byte for byte the SAN of the openssl-made reference IDC (same hwType, same hwSerialNum).
  EXPECT_NE(asn1.output.find(std::string("[HEX DUMP]:") + kReferenceSanHex + "\n"), std::string::npos)
      << asn1.output;
}

TEST_F(IssuerTest, CsrSubjectAndExtensionsAreIgnored) {
  TempDir dir;
  auto made = run("openssl req -new -key '" + kVectors + "idc.key" +
                  "' -subj '/CN=evil/O=Evil Corp/serialNumber=1' " +
                  "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign' " +
                  "-addext 'subjectAltName=DNS:evil.example,IP:10.0.0.1,email:a@evil.example' -out '" +
                  (dir / "evil.csr") + "'");
  ASSERT_EQ(made.status, 0) << made.output;
  x509::Csr evil = load_csr(dir / "evil.csr");
  ASSERT_EQ(evil.requested_basic_constraints(), (x509::BasicConstraints{true, std::nullopt, true}));

  auto idc = idc_issuer_->issue(idc_request(evil), idc_);
  ASSERT_TRUE(idc) << idc.error().detail;
  EXPECT_EQ(idc->subject().to_string(), "serialNumber=" + ukid() + ",O=Example OEM,CN=Widget 2000");
  EXPECT_EQ(idc->basic_constraints(), (x509::BasicConstraints{false, std::nullopt, true}));
  EXPECT_EQ(idc->key_usage(), (x509::KeyUsage{x509::kDigitalSignature | x509::kKeyAgreement, true}));
  ASSERT_TRUE(idc->subject_alt_name());
  ASSERT_EQ(idc->subject_alt_name()->names.size(), 1u);
  EXPECT_EQ(idc->subject_alt_name()->names[0].kind, x509::GeneralName::Kind::hardware_module_name);
  EXPECT_FALSE(idc->is_ca());

  // With allow_csr_san, only the DNS/IP/URI entries are taken; still no CA bit.
  Profile lenient = idc_;
  lenient.allow_csr_san = true;
  idc = idc_issuer_->issue(idc_request(evil), lenient);
  ASSERT_TRUE(idc) << idc.error().detail;
  ASSERT_TRUE(idc->subject_alt_name());
  auto hw = parse_hex(kHwSerial);
  EXPECT_EQ(idc->subject_alt_name()->names,
            (std::vector<x509::GeneralName>{x509::GeneralName::hmn({"1.3.6.1.4.1.55555.1.1", *hw}),
                                            x509::GeneralName::dns("evil.example"),
                                            x509::GeneralName::ip("10.0.0.1")}));
  EXPECT_FALSE(idc->is_ca());
}

TEST_F(IssuerTest, WeakAndForbiddenKeysAreRefused) {
  TempDir dir;
  auto made = run("openssl req -new -newkey rsa:1024 -nodes -keyout '" + (dir / "rsa.key") +
                  "' -subj /CN=weak -out '" + (dir / "rsa.csr") + "'");
  ASSERT_EQ(made.status, 0) << made.output;
  auto r = idc_issuer_->issue(idc_request(load_csr(dir / "rsa.csr")), idc_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::forbidden);
  EXPECT_EQ(r.error().detail, "profile idc does not allow RSA 1024 keys (minimum 2048 bits)");

  made = run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes -keyout '" +
             (dir / "p521.key") + "' -subj /CN=big -out '" + (dir / "p521.csr") + "'");
  ASSERT_EQ(made.status, 0) << made.output;
  r = idc_issuer_->issue(idc_request(load_csr(dir / "p521.csr")), idc_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::forbidden);
  EXPECT_EQ(r.error().detail,
            "profile idc does not allow EC P-521 keys (allowed: EC P-256, EC P-384, Ed25519, RSA 2048-4096)");
}

TEST_F(IssuerTest, BadCsrSignatureIsRefused) {
  Bytes der = load_csr(kVectors + "idc.csr").to_der();
  der.back() ^= std::byte{0x01};  // last byte of the ECDSA s value
  auto csr = x509::Csr::parse_der(der);
  ASSERT_TRUE(csr) << csr.error().detail;
  auto r = idc_issuer_->issue(idc_request(*csr), idc_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_input);
  EXPECT_EQ(r.error().detail, "CSR signature does not verify");
}

TEST_F(IssuerTest, MissingVariablesFailOrAreLeftOut) {
  IssueRequest request = idc_request(load_csr(kVectors + "idc.csr"));
  request.variables.erase("serial");
  auto r = idc_issuer_->issue(request, idc_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_input);
  EXPECT_EQ(r.error().detail, "profile idc: subject serialNumber needs variable {serial}");

  request = idc_request(load_csr(kVectors + "idc.csr"));
  request.variables["hw_serial"] = "";
  r = idc_issuer_->issue(request, idc_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "profile idc: hardwareModuleName needs variable {hw_serial}");

  // A non-hex hardware serial is taken as its UTF-8 bytes; {org} from the request beats the default.
  request = idc_request(load_csr(kVectors + "idc.csr"));
  request.variables["hw_serial"] = "SN-42";
  request.variables["org"] = "Other OEM";
  r = idc_issuer_->issue(request, idc_);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->subject().get("O"), "Other OEM");
  EXPECT_EQ(r->subject_alt_name()->names[0].hardware_module_name->hw_serial_num, to_bytes("SN-42"));

  // tls-server: SAN IP only when {ip} is given.
  const Profile& tls = find_profile(profiles_, "tls-server");
  auto key = make_signer(crypto::KeyType::ec_p256, "test:tls");
  r = idc_issuer_->issue({key->public_key(), {{"host", "ra.example.com"}}, {}, {}}, tls);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->subject_alt_name()->names,
            std::vector<x509::GeneralName>{x509::GeneralName::dns("ra.example.com")});
  EXPECT_EQ(r->key_usage(), (x509::KeyUsage{x509::kDigitalSignature, true}));  // no keyAgreement here
  r = idc_issuer_->issue({key->public_key(), {{"host", "ra.example.com"}, {"ip", "192.0.2.7"}}, {}, {}}, tls);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->subject_alt_name()->names,
            (std::vector<x509::GeneralName>{x509::GeneralName::dns("ra.example.com"),
                                            x509::GeneralName::ip("192.0.2.7")}));
  EXPECT_EQ(r->not_after(), clock_.now() + std::chrono::days(825));
}

TEST_F(IssuerTest, LifetimeIsClampedToTheCasNotAfter) {
  // A sub-CA that lives 30 days.
  auto short_signer = make_signer(crypto::KeyType::ec_p256, "test:short");
  IssueRequest sub_request{short_signer->public_key(), {}, std::chrono::seconds(std::chrono::days(30)), {}};
  auto short_sub = root_issuer_->issue(sub_request, find_profile(profiles_, "sub-ca-tls"));
  ASSERT_TRUE(short_sub) << short_sub.error().detail;
  EXPECT_EQ(short_sub->not_after(), clock_.now() + std::chrono::days(30));
  Issuer short_issuer(*short_sub, short_signer, clock_);

  auto key = make_signer(crypto::KeyType::ec_p256, "test:leaf");
  // 825 days asked, 30 days given.
  auto tls = short_issuer.issue({key->public_key(), {{"host", "ra.example.com"}}, {}, {}},
                                find_profile(profiles_, "tls-server"));
  ASSERT_TRUE(tls) << tls.error().detail;
  EXPECT_EQ(tls->not_after(), short_sub->not_after());
  // "forever" too: an IDC cannot outlive an expiring CA.
  auto idc = short_issuer.issue(idc_request(load_csr(kVectors + "idc.csr")), idc_);
  ASSERT_TRUE(idc) << idc.error().detail;
  EXPECT_EQ(idc->not_after(), short_sub->not_after());
  // A shorter lifetime is kept.
  IssueRequest brief{
      key->public_key(), {{"host", "ra.example.com"}}, std::chrono::seconds(std::chrono::days(1)), {}};
  tls = short_issuer.issue(brief, find_profile(profiles_, "tls-server"));
  ASSERT_TRUE(tls) << tls.error().detail;
  EXPECT_EQ(tls->not_after(), clock_.now() + std::chrono::days(1));

  // Under a CA without expiry nothing is clamped.
  idc = idc_issuer_->issue(idc_request(load_csr(kVectors + "idc.csr")), idc_);
  ASSERT_TRUE(idc);
  EXPECT_EQ(idc->not_after(), kNoExpiry);

  // Once the CA has expired, it issues nothing.
  FixedClock later(clock_.now() + std::chrono::days(31));
  Issuer expired(*short_sub, short_signer, later);
  auto r = expired.issue({key->public_key(), {{"host", "ra.example.com"}}, {}, {}},
                         find_profile(profiles_, "tls-server"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::forbidden);
  EXPECT_EQ(r.error().detail, "issuing CA " + short_sub->subject().to_string() + " expired at " +
                                  to_iso8601(short_sub->not_after()));
}

TEST_F(IssuerTest, SerialsAreSixteenPositiveBytesAndUnique) {
  const IssueRequest request = idc_request(load_csr(kVectors + "idc.csr"));
  std::set<Bytes> serials;
  for (int i = 0; i < 1000; ++i) {
    auto cert = idc_issuer_->issue(request, idc_);
    ASSERT_TRUE(cert) << cert.error().detail;
    Bytes serial = cert->serial();
    // 16 content octets, top bit clear: a positive INTEGER without a 0x00 pad (DESIGN.md §2)
    ASSERT_EQ(serial.size(), 16u);
    ASSERT_EQ(std::to_integer<int>(serial[0]) & 0x80, 0);
    serials.insert(std::move(serial));
  }
  EXPECT_EQ(serials.size(), 1000u);
}

TEST_F(IssuerTest, MakeCrlIsSignedByTheCa) {
  x509::CrlTemplate tmpl;
  tmpl.crl_number = 7;
  tmpl.this_update = clock_.now();
  tmpl.next_update = clock_.now() + std::chrono::days(7);
  tmpl.entries.push_back({x509::make_serial(), clock_.now(), x509::RevocationReason::key_compromise});
  auto crl = idc_issuer_->make_crl(tmpl);
  ASSERT_TRUE(crl) << crl.error().detail;
  EXPECT_EQ(crl->issuer(), sub_.subject());
  EXPECT_EQ(crl->crl_number(), 7u);
  EXPECT_EQ(crl->entries(), tmpl.entries);
  EXPECT_TRUE(crl->verify_signature(sub_.public_key()));
}

}  // namespace
}  // namespace hallmark::ca
