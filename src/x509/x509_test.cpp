#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/builder.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/crl.hpp"
#include "hallmark/x509/csr.hpp"
#include "hallmark/x509/extensions.hpp"
#include "hallmark/x509/name.hpp"
#include "process.hpp"

namespace hallmark::x509 {
namespace {

using namespace std::chrono_literals;
using testing::run;
using testing::shell_quote;
using testing::TempDir;

std::string shared_path(const std::string& rel) {
  return std::string(HALLMARK_SHARED_DIR) + "/" + rel;
}

std::string read_text(const std::string& path) {
  auto text = read_text_file(path);
  EXPECT_TRUE(text.has_value()) << path;
  return text.value_or("");
}

void write_text(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

Seconds at(std::string_view iso) {
  return parse_iso8601(iso).value();
}

Seconds now() {
  return SystemClock().now();
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::string cn_of(const Name& n) {
  return n.get("CN").value_or("<none>");
}

std::unique_ptr<crypto::FileSigner> make_signer(crypto::KeyType type = crypto::KeyType::ec_p256) {
  return std::make_unique<crypto::FileSigner>(crypto::PrivateKey::generate(type).value(), "test");
}

Bytes hex(std::string_view h) {
  return parse_hex(h).value();
}

// ---------------------------------------------------------------------------------------------
// Names

TEST(Name, MakeChoosesPrintableOrUtf8AndReadsBack) {
  auto n =
      Name::make({{"C", "DE"}, {"O", "Example OEM"}, {"CN", "Gerät 1"}, {"serialNumber", "ABC-123"}}).value();
  const X509_NAME* raw = n.native();
  ASSERT_EQ(X509_NAME_entry_count(raw), 4);
  EXPECT_EQ(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(raw, 0))), V_ASN1_PRINTABLESTRING);
  EXPECT_EQ(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(raw, 1))), V_ASN1_PRINTABLESTRING);
  EXPECT_EQ(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(raw, 2))), V_ASN1_UTF8STRING);
  EXPECT_EQ(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(raw, 3))), V_ASN1_PRINTABLESTRING);
  EXPECT_EQ(n.to_string(), "C=DE,O=Example OEM,CN=Gerät 1,serialNumber=ABC-123");
  EXPECT_EQ(n.get("CN").value(), "Gerät 1");
  EXPECT_EQ(n.get("2.5.4.3").value(), "Gerät 1");
  EXPECT_EQ(n.get("OU"), std::nullopt);
  const auto attrs = n.attributes();
  ASSERT_EQ(attrs.size(), 4u);
  EXPECT_EQ(attrs[3].type, "serialNumber");
  EXPECT_EQ(attrs[3].value, "ABC-123");
  EXPECT_FALSE(n.empty());
  EXPECT_TRUE(Name().empty());
  EXPECT_EQ(Name::parse_der(n.to_der()).value(), n);
}

TEST(Name, RejectsWhatX520Forbids) {
  EXPECT_EQ(Name::make({{"C", "Deutschland"}}).error().code, Errc::invalid_input);
  EXPECT_EQ(Name::make({{"serialNumber", "eui48_0"}}).error().detail,
            "name: serialNumber must be a PrintableString: eui48_0");
  EXPECT_EQ(Name::make({{"XX-unknown", "v"}}).error().detail, "name: unknown attribute type XX-unknown");
  EXPECT_EQ(Name::make({{"CN", std::string("\xff\xfe", 2)}}).error().detail,
            "name: value of CN is not UTF-8");
  EXPECT_FALSE(Name::make({{"CN", ""}}));
}

TEST(Name, ParsesSlashAndCommaFormsInWrittenOrder) {
  auto slash = Name::parse_string("/O=Example OEM/CN=Device 1").value();
  auto comma = Name::parse_string("O=Example OEM, CN=Device 1").value();
  EXPECT_EQ(slash.to_string(), "O=Example OEM,CN=Device 1");
  EXPECT_EQ(slash.to_der(), comma.to_der());
  auto escaped = Name::parse_string("O=Example\\, Inc., CN=a\\+b").value();
  EXPECT_EQ(escaped.get("O").value(), "Example, Inc.");
  EXPECT_EQ(escaped.to_string(), "O=Example\\, Inc.,CN=a\\+b");
  EXPECT_EQ(Name::parse_string("1.2.3.4=x").value().attributes()[0].type, "1.2.3.4");
  EXPECT_EQ(Name::parse_string("/O=x/CN").error().detail, "name: expected type=value, got \"CN\"");
  EXPECT_TRUE(Name::parse_string("").value().empty());
}

TEST(Name, ComparesDecodedNotRawBytes) {
  // The same text as UTF8String (what `openssl req` writes) and as PrintableString (what make writes).
  crypto::X509NamePtr utf8(X509_NAME_new());
  X509_NAME_add_entry_by_txt(utf8.get(), "O", V_ASN1_UTF8STRING,
                             reinterpret_cast<const unsigned char*>("Example OEM"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(utf8.get(), "CN", V_ASN1_UTF8STRING,
                             reinterpret_cast<const unsigned char*>("Device"), -1, -1, 0);
  const Name a = Name::copy_of(utf8.get());
  const Name b = Name::make({{"O", "Example OEM"}, {"CN", "Device"}}).value();
  EXPECT_NE(a.to_der(), b.to_der());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, Name::make({{"O", "example  oem"}, {"CN", "DEVICE"}}).value());  // canonical form
  EXPECT_FALSE(a == Name::make({{"O", "Example OEM"}, {"CN", "Device 2"}}).value());
  EXPECT_FALSE(a == Name::make({{"CN", "Device"}, {"O", "Example OEM"}}).value());  // order matters
}

// ---------------------------------------------------------------------------------------------
// Extensions

TEST(Extensions, KeyUsageAndEkuNames) {
  KeyUsage ku{kDigitalSignature | kKeyAgreement, true};
  EXPECT_EQ(ku.to_string(), "digitalSignature,keyAgreement");
  EXPECT_EQ(KeyUsage{kKeyCertSign | kCrlSign}.to_string(), "keyCertSign,cRLSign");
  EXPECT_EQ(parse_key_usage_bit("contentCommitment").value(), kNonRepudiation);
  EXPECT_EQ(parse_key_usage_bit("crlsign").value(), kCrlSign);
  EXPECT_EQ(parse_key_usage_bit("decipherOnly").value(), kDecipherOnly);
  EXPECT_EQ(parse_key_usage_bit("signEverything").error().detail, "unknown key usage: signEverything");
  EXPECT_EQ(parse_eku("clientAuth").value(), kOidClientAuth);
  EXPECT_EQ(parse_eku("OCSPSigning").value(), kOidOcspSigning);
  EXPECT_EQ(parse_eku("1.3.6.1.4.1.55555.9").value(), "1.3.6.1.4.1.55555.9");
  EXPECT_EQ(parse_eku("1..2").error().code, Errc::invalid_input);
  EXPECT_EQ(parse_eku("anything").error().detail, "unknown extended key usage: anything");
}

TEST(Extensions, GeneralNameTextAndEquality) {
  const auto hmn = GeneralName::hmn({"1.3.6.1.4.1.55555.1.1", hex("0123ab")});
  EXPECT_EQ(hmn.to_string(), "HardwareModuleName:1.3.6.1.4.1.55555.1.1;0123AB");
  EXPECT_EQ(GeneralName::dns("example.com").to_string(), "DNS:example.com");
  EXPECT_EQ(GeneralName::ip("192.0.2.1").to_string(), "IP:192.0.2.1");
  EXPECT_EQ(GeneralName::dir(Name::parse_string("CN=x").value()).to_string(), "DirName:CN=x");
  EXPECT_EQ(GeneralName::dns("Example.COM"), GeneralName::dns("example.com"));
  EXPECT_EQ(GeneralName::ip("2001:db8::1"), GeneralName::ip("2001:0db8:0:0::1"));
  EXPECT_FALSE(GeneralName::uri("http://a/") == GeneralName::dns("http://a/"));
  EXPECT_FALSE(hmn == GeneralName::hmn({"1.3.6.1.4.1.55555.1.1", hex("0123ac")}));
}

// ---------------------------------------------------------------------------------------------
// Vendor samples

TEST(Samples, EveryMicrochipSignerAndTheRootParse) {
  struct Expect {
    std::string file, cn;
    bool no_expiry;
  };
  const std::vector<Expect> expected{
      {"MCHP_manifest_signer_1_Jan-21-2019_Jul2-21-2019.crt", "Log Signer 001", false},
      {"MCHP_manifest_signer_2_Aug-15-2019_Aug-15-2020.crt", "Log Signer 002", false},
      {"MCHP_manifest_signer_3_Aug-13-2020_Aug-13-2023.crt", "Log Signer 003", false},
      {"MCHP_manifest_signer_4_Jul-18-2023_Jul-18-2026.crt", "Log Signer 004", false},
      {"MCHP_manifest_signer_5_Mar_6-2024_noExpiration.crt", "Manifest Signer 005", true},
  };
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(shared_path("samples/microchip/signers"))) {
    ++files;
    auto cert = Certificate::load(entry.path().string());
    ASSERT_TRUE(cert) << entry.path() << ": " << cert.error().detail;
    const auto it = std::find_if(expected.begin(), expected.end(),
                                 [&](const Expect& e) { return e.file == entry.path().filename().string(); });
    ASSERT_NE(it, expected.end()) << entry.path();
    EXPECT_EQ(cn_of(cert->subject()), it->cn);
    EXPECT_EQ(cert->subject().get("O").value(), "Microchip Technology Inc");
    EXPECT_TRUE(cert->is_self_issued());
    EXPECT_EQ(cert->has_no_expiry(), it->no_expiry);
    EXPECT_TRUE(cert->verify_signature(cert->public_key()));
  }
  EXPECT_EQ(files, expected.size());
  const auto s1 = Certificate::load(shared_path("samples/microchip/signers/" + expected[0].file)).value();
  EXPECT_EQ(s1.not_before(), at("2019-01-22T00:27:42Z"));
  EXPECT_EQ(s1.not_after(), at("2019-07-22T00:27:42Z"));

  auto root =
      Certificate::load(shared_path("samples/microchip/Crypto_Authentication_Root_CA_002.crt")).value();
  EXPECT_EQ(root.subject().to_string(), "O=Microchip Technology Inc,CN=Crypto Authentication Root CA 002");
  EXPECT_EQ(root.not_after(), at("2058-11-08T19:12:19Z"));
  EXPECT_TRUE(root.is_ca());
  EXPECT_EQ(root.signature_algorithm(), "ecdsa-with-SHA256");
  EXPECT_EQ(root.public_key().info().describe(), "EC P-256");
}

TEST(Samples, InfineonCrlfPemsHaveTheRightKeysAndIssuers) {
  const std::string dir = "samples/infineon/optiga-trust-m-express-reel-78211223032C7EFA/";
  std::size_t count = 0;
  for (const std::string chip : {"0A091B5C001500070063", "0A091B5C0015000C0069"}) {
    for (const std::string slot : {"E0E0", "E0E1", "E0E2"}) {
      const auto text = read_text(shared_path(dir + chip + "_" + slot + ".pem"));
      ASSERT_NE(text.find("\r\n"), std::string::npos);
      auto cert = Certificate::parse(as_bytes(text));
      ASSERT_TRUE(cert) << chip << slot << ": " << cert.error().detail;
      ++count;
      const auto info = cert->public_key().info();
      const auto issuer_cn = cn_of(cert->issuer());
      EXPECT_EQ(cert->issuer().get("O").value(), "Infineon Technologies AG");
      EXPECT_EQ(cert->subject().get("C").value(), "DE");
      EXPECT_EQ(cn_of(cert->subject()).size(), 64u);
      if (slot == "E0E2") {
        EXPECT_EQ(info.algorithm, crypto::KeyInfo::Algorithm::rsa);
        EXPECT_EQ(info.bits, 2048);
        EXPECT_EQ(issuer_cn, "Infineon OPTIGA(TM) Trust M CA 309");
      } else {
        EXPECT_EQ(info.algorithm, crypto::KeyInfo::Algorithm::ec);
        EXPECT_EQ(info.curve, "P-256");
        EXPECT_EQ(issuer_cn, "Infineon OPTIGA(TM) Trust M CA 306");
      }
      // Same certificate from PEM and from the DER it holds; PEM out and back is stable.
      EXPECT_EQ(Certificate::parse_der(cert->to_der()).value(), *cert);
      EXPECT_EQ(Certificate::parse_pem(cert->to_pem()).value().to_der(), cert->to_der());
    }
  }
  EXPECT_EQ(count, 6u);
}

TEST(Samples, MicrochipManifestCertificatesChainToRootAtProvisioningTime) {
  const auto root =
      Certificate::load(shared_path("samples/microchip/Crypto_Authentication_Root_CA_002.crt")).value();
  TrustStore store;
  store.add_anchor(root);
  const auto manifest = nlohmann::json::parse(
      read_text(shared_path("samples/microchip/pytrustplatform_ATECC608A-MAH4I_manifest.json")));
  ASSERT_EQ(manifest.size(), 2u);
  std::size_t devices = 0;
  std::size_t certs = 0;
  for (const auto& signed_entry : manifest) {
    const auto payload = crypto::base64url_decode(signed_entry.at("payload").get<std::string>()).value();
    const auto entry = nlohmann::json::parse(as_chars(payload));
    const auto provisioned = at(entry.at("provisioningTimestamp").get<std::string>());
    for (const auto& key : entry.at("publicKeySet").at("keys")) {
      if (!key.contains("x5c")) continue;
      std::vector<Certificate> chain;
      for (const auto& b64 : key.at("x5c")) {
        auto cert = Certificate::parse_der(crypto::base64_decode(b64.get<std::string>()).value());
        ASSERT_TRUE(cert) << cert.error().detail;
        chain.push_back(*cert);
        ++certs;
      }
      ASSERT_EQ(chain.size(), 2u);
      const auto& device = chain[0];
      EXPECT_EQ(cn_of(device.subject()), "sn" + upper(entry.at("uniqueId").get<std::string>()));
      EXPECT_FALSE(device.is_ca());
      EXPECT_TRUE(chain[1].is_ca());
      auto path = store.verify(device, {chain[1]}, provisioned);
      ASSERT_TRUE(path) << path.error().detail;
      ASSERT_EQ(path->size(), 3u);
      EXPECT_EQ((*path)[0], device);
      EXPECT_EQ((*path)[1], chain[1]);
      EXPECT_EQ((*path)[2], root);
      // Without the signer certificate, and before the device certificate existed, it fails.
      const auto missing = store.verify(device, {}, provisioned);
      ASSERT_FALSE(missing);
      EXPECT_EQ(missing.error().code, Errc::unauthenticated);
      EXPECT_EQ(missing.error().detail,
                "certificate verification failed: unable to get local issuer certificate (subject " +
                    device.subject().to_string() + ")");
      const auto early = store.verify(device, {chain[1]}, at("2020-06-09T21:59:59Z"));
      ASSERT_FALSE(early);
      EXPECT_EQ(early.error().detail,
                "certificate verification failed: certificate is not yet valid (subject " +
                    device.subject().to_string() + ")");
      ++devices;
    }
  }
  EXPECT_EQ(devices, 2u);
  EXPECT_EQ(certs, 4u);
}

TEST(Samples, PrintableStringWithUnderscoreIsTolerated) {
  // Current ATECC608C certificates: subject and SAN directoryName serialNumber "eui48_000000000000"
  // as a PrintableString, which the alphabet forbids. Built with plain OpenSSL, no hallmark code.
  auto key = crypto::PrivateKey::generate(crypto::KeyType::ec_p256).value();
  crypto::X509NamePtr name(X509_NAME_new());
  X509_NAME_add_entry_by_txt(name.get(), "O", V_ASN1_UTF8STRING,
                             reinterpret_cast<const unsigned char*>("Microchip Technology Inc"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name.get(), "serialNumber", V_ASN1_PRINTABLESTRING,
                             reinterpret_cast<const unsigned char*>("eui48_000000000000"), -1, -1, 0);
  crypto::X509Ptr x(X509_new());
  X509_set_version(x.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 7);
  X509_set_subject_name(x.get(), name.get());
  X509_set_issuer_name(x.get(), name.get());
  X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 3600);
  X509_set_pubkey(x.get(), key.native());
  crypto::GeneralNamesPtr gens(sk_GENERAL_NAME_new_null());
  GENERAL_NAME* gen = GENERAL_NAME_new();
  GENERAL_NAME_set0_value(gen, GEN_DIRNAME, X509_NAME_dup(name.get()));
  sk_GENERAL_NAME_push(gens.get(), gen);
  ASSERT_EQ(X509_add1_ext_i2d(x.get(), NID_subject_alt_name, gens.get(), 0, 0), 1);
  ASSERT_GT(X509_sign(x.get(), key.native(), EVP_sha256()), 0);
  Bytes der(static_cast<std::size_t>(i2d_X509(x.get(), nullptr)));
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509(x.get(), &p);

  auto cert = Certificate::parse_der(der);
  ASSERT_TRUE(cert) << cert.error().detail;
  EXPECT_EQ(cert->subject().get("serialNumber").value(), "eui48_000000000000");
  EXPECT_EQ(cert->subject().to_string(), "O=Microchip Technology Inc,serialNumber=eui48_000000000000");
  auto san = cert->subject_alt_name().value();
  ASSERT_EQ(san.names.size(), 1u);
  ASSERT_EQ(san.names[0].kind, GeneralName::Kind::directory);
  EXPECT_EQ(san.names[0].directory->get("serialNumber").value(), "eui48_000000000000");
  EXPECT_EQ(*san.names[0].directory, cert->subject());
  EXPECT_TRUE(cert->verify_signature(key.public_key()));
}

// ---------------------------------------------------------------------------------------------
// The 802.1AR reference vectors (made by the openssl CLI)

TEST(Vectors, IdcHardwareModuleNameNoExpiryAndUsages) {
  const auto dir = shared_path("vectors/idc-8021ar/");
  const auto idc = Certificate::load(dir + "idc.pem").value();
  const auto root = Certificate::load(dir + "root.pem").value();
  const auto san = idc.subject_alt_name().value();
  ASSERT_EQ(san.names.size(), 1u);
  ASSERT_EQ(san.names[0].kind, GeneralName::Kind::hardware_module_name);
  EXPECT_EQ(san.names[0].hardware_module_name->hw_type, "1.3.6.1.4.1.55555.1.1");
  EXPECT_EQ(san.names[0].hardware_module_name->hw_serial_num, hex("0123F2408EA1FCF201"));
  EXPECT_EQ(idc.not_after(), kNoExpiry);
  EXPECT_TRUE(idc.has_no_expiry());
  EXPECT_EQ(idc.extended_key_usage().value(), (ExtendedKeyUsage{{kOidClientAuth}, false}));
  EXPECT_EQ(idc.key_usage().value(), (KeyUsage{kDigitalSignature | kKeyAgreement, true}));
  EXPECT_EQ(idc.basic_constraints().value(), (BasicConstraints{false, std::nullopt, true}));
  EXPECT_EQ(idc.serial_hex(), "1001");
  EXPECT_EQ(idc.issuer().to_string(), "O=Example OEM,CN=Example OEM Root");
  EXPECT_EQ(idc.authority_key_id().value(), root.subject_key_id().value());
  EXPECT_FALSE(idc.is_ca());
  EXPECT_TRUE(root.is_ca());
  EXPECT_TRUE(idc.verify_signature(root.public_key()));
  EXPECT_FALSE(idc.verify_signature(idc.public_key()));
  TrustStore store;
  store.add_anchor(root);
  auto path = store.verify(idc, {}, idc.not_before() + 1h);
  ASSERT_TRUE(path) << path.error().detail;
  EXPECT_EQ(path->size(), 2u);
  const auto text = idc.describe();
  EXPECT_NE(text.find("Not after: no expiry (99991231235959Z)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("Subject alt name: HardwareModuleName:1.3.6.1.4.1.55555.1.1;0123F2408EA1FCF201\n"),
            std::string::npos)
      << text;
}

TEST(Vectors, BirthCertificateUkidAndIdcCsr) {
  const auto dir = shared_path("vectors/idc-8021ar/");
  std::string ukid = read_text(dir + "bc.ukid");
  while (!ukid.empty() && (ukid.back() == '\n' || ukid.back() == '\r')) ukid.pop_back();
  ASSERT_EQ(ukid.size(), 64u);
  const auto bc = Certificate::load(dir + "bc.pem").value();
  EXPECT_EQ(bc.public_key().sha256_hex(), ukid);
  EXPECT_EQ(cn_of(bc.subject()), "sn0123F2408EA1FCF201");

  const auto csr_text = read_text(dir + "idc.csr");
  auto csr = Csr::parse(as_bytes(csr_text));
  ASSERT_TRUE(csr) << csr.error().detail;
  EXPECT_TRUE(csr->verify_self_signature());
  EXPECT_EQ(csr->subject().get("serialNumber").value(), ukid);
  EXPECT_EQ(csr->subject().to_string(), "serialNumber=" + ukid + ",O=Example OEM,CN=Example Widget");
  EXPECT_EQ(csr->challenge_password(), std::nullopt);
  EXPECT_EQ(csr->requested_subject_alt_name(), std::nullopt);
  // `openssl req` wrote UTF8Strings; the same text made by hallmark (PrintableString) is equal.
  EXPECT_EQ(csr->subject(),
            Name::make({{"serialNumber", ukid}, {"O", "Example OEM"}, {"CN", "Example Widget"}}).value());
  EXPECT_FALSE(csr->subject() ==
               Name::make({{"serialNumber", ukid}, {"O", "Example OEM"}, {"CN", "Other Widget"}}).value());
  // The IDC was issued for this CSR's key.
  EXPECT_EQ(csr->public_key(), Certificate::load(dir + "idc.pem").value().public_key());
  EXPECT_EQ(Csr::parse_der(csr->to_der()).value().to_der(), csr->to_der());
}

// ---------------------------------------------------------------------------------------------
// Strictness

TEST(Parsing, RejectsTrailingBytesAndGarbage) {
  const auto idc = Certificate::load(shared_path("vectors/idc-8021ar/idc.pem")).value();
  Bytes der = idc.to_der();
  der.push_back(std::byte{0});
  EXPECT_EQ(Certificate::parse_der(der).error().detail, "certificate: trailing bytes after DER");
  EXPECT_EQ(Certificate::parse(der).error().code, Errc::invalid_input);
  EXPECT_EQ(Certificate::parse_der({}).error().detail, "certificate: empty input");
  EXPECT_EQ(Certificate::parse_pem("hello").error().code, Errc::invalid_input);
  EXPECT_EQ(Certificate::parse_pem_chain("nothing here").error().detail,
            "certificate chain: no CERTIFICATE block");

  const auto csr = Csr::parse_pem(read_text(shared_path("vectors/idc-8021ar/idc.csr"))).value();
  Bytes csr_der = csr.to_der();
  csr_der.push_back(std::byte{0x30});
  EXPECT_EQ(Csr::parse_der(csr_der).error().detail, "CSR: trailing bytes after DER");

  // Leading text and several blocks.
  const auto root = Certificate::load(shared_path("vectors/idc-8021ar/root.pem")).value();
  const auto chain =
      Certificate::parse_pem_chain("Subject: whatever\n" + idc.to_pem() + "junk\n" + root.to_pem());
  ASSERT_TRUE(chain);
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ((*chain)[0], idc);
  EXPECT_EQ((*chain)[1], root);
  EXPECT_EQ(Certificate::parse_pem("intro text\r\n" + root.to_pem()).value(), root);
}

// ---------------------------------------------------------------------------------------------
// Building a PKI

struct TestPki {
  std::unique_ptr<crypto::FileSigner> root_signer = make_signer();
  std::unique_ptr<crypto::FileSigner> sub_signer = make_signer();
  Certificate root;
  Certificate sub;

  TestPki() {
    const auto t0 = now() - 1h;
    CertificateTemplate r;
    r.subject = Name::make({{"O", "Example OEM"}, {"CN", "Example Root"}}).value();
    r.public_key = root_signer->public_key();
    r.serial = make_serial();
    r.not_before = t0;
    r.not_after = t0 + 24h * 3650;
    r.basic_constraints = BasicConstraints{true, std::nullopt, true};
    r.key_usage = KeyUsage{kKeyCertSign | kCrlSign, true};
    root = make_certificate(r, std::nullopt, *root_signer).value();

    CertificateTemplate s;
    s.subject = Name::make({{"O", "Example OEM"}, {"CN", "Example IDC CA"}}).value();
    s.public_key = sub_signer->public_key();
    s.serial = make_serial();
    s.not_before = t0;
    s.not_after = t0 + 24h * 3000;
    s.basic_constraints = BasicConstraints{true, 0, true};
    s.key_usage = KeyUsage{kKeyCertSign | kCrlSign, true};
    sub = make_certificate(s, root, *root_signer).value();
  }

  CertificateTemplate idc_template(const crypto::PublicKey& key) const {
    CertificateTemplate t;
    t.subject =
        Name::make({{"serialNumber", "0123F2408EA1FCF201"}, {"O", "Example OEM"}, {"CN", "Example Widget"}})
            .value();
    t.public_key = key;
    t.serial = make_serial();
    t.not_before = now() - 5min;
    t.not_after = kNoExpiry;
    t.basic_constraints = BasicConstraints{false, std::nullopt, true};
    t.key_usage = KeyUsage{kDigitalSignature | kKeyAgreement, true};
    t.extended_key_usage = ExtendedKeyUsage{{kOidClientAuth}, false};
    t.subject_alt_name =
        SubjectAltName{{GeneralName::hmn({"1.3.6.1.4.1.55555.1.1", hex("0123F2408EA1FCF201")}),
                        GeneralName::dns("widget.example"), GeneralName::ip("192.0.2.7"),
                        GeneralName::uri("urn:dev:0123"), GeneralName::email("dev@example.com")},
                       false};
    t.crl_distribution_points = CrlDistributionPoints{{"http://pki.example.com/crl/idc.crl"}};
    t.authority_info_access =
        AuthorityInfoAccess{{"http://pki.example.com/ocsp"}, {"http://pki.example.com/ca/idc.cer"}};
    t.certificate_policies = CertificatePolicies{{"1.3.6.1.4.1.55555.2.1"}};
    return t;
  }
};

TEST(Builder, IdcWithEveryExtensionReadsBack) {
  TestPki pki;
  const auto device = make_signer();
  auto tmpl = pki.idc_template(device->public_key());
  tmpl.ocsp_no_check = true;
  auto leaf = make_certificate(tmpl, pki.sub, *pki.sub_signer);
  ASSERT_TRUE(leaf) << leaf.error().detail;
  EXPECT_EQ(leaf->subject(), tmpl.subject);
  EXPECT_EQ(leaf->issuer(), pki.sub.subject());
  EXPECT_EQ(leaf->serial(), tmpl.serial);
  EXPECT_EQ(leaf->not_before(), tmpl.not_before);
  EXPECT_EQ(leaf->not_after(), kNoExpiry);
  EXPECT_EQ(leaf->public_key(), device->public_key());
  EXPECT_EQ(leaf->basic_constraints(), tmpl.basic_constraints);
  EXPECT_EQ(leaf->key_usage(), tmpl.key_usage);
  EXPECT_EQ(leaf->extended_key_usage(), tmpl.extended_key_usage);
  EXPECT_EQ(leaf->subject_alt_name(), tmpl.subject_alt_name);
  EXPECT_EQ(leaf->crl_distribution_points(), tmpl.crl_distribution_points);
  EXPECT_EQ(leaf->authority_info_access(), tmpl.authority_info_access);
  EXPECT_EQ(leaf->certificate_policies(), tmpl.certificate_policies);
  EXPECT_TRUE(leaf->has_extension(kOidOcspNoCheck));
  EXPECT_FALSE(pki.sub.has_extension(kOidOcspNoCheck));
  EXPECT_EQ(leaf->signature_algorithm(), "ecdsa-with-SHA256");
  // SKI method 1 (SHA-1 of the subjectPublicKey), AKI = issuer's SKI, none on the self-signed root.
  const ASN1_BIT_STRING* spk = X509_get0_pubkey_bitstr(leaf->native());
  EXPECT_EQ(leaf->subject_key_id().value(),
            crypto::sha1(ByteView(reinterpret_cast<const std::byte*>(ASN1_STRING_get0_data(spk)),
                                  static_cast<std::size_t>(ASN1_STRING_length(spk)))));
  EXPECT_EQ(leaf->authority_key_id().value(), pki.sub.subject_key_id().value());
  EXPECT_EQ(pki.sub.authority_key_id().value(), pki.root.subject_key_id().value());
  EXPECT_EQ(pki.root.authority_key_id(), std::nullopt);
  EXPECT_EQ(pki.sub.basic_constraints(), (BasicConstraints{true, 0, true}));
  EXPECT_TRUE(pki.root.is_self_issued());
  EXPECT_EQ(leaf->serial().size(), 16u);
  EXPECT_TRUE(leaf->verify_signature(pki.sub.public_key()));
  EXPECT_FALSE(leaf->verify_signature(pki.root.public_key()));
  // The kept DER is what parsing yields, byte for byte.
  EXPECT_EQ(Certificate::parse_der(leaf->to_der()).value().to_der(), leaf->to_der());

  TrustStore store;
  store.add_anchor(pki.root);
  auto path = store.verify(*leaf, {pki.sub}, now());
  ASSERT_TRUE(path) << path.error().detail;
  EXPECT_EQ(path->size(), 3u);
  const auto expired = store.verify(*leaf, {pki.sub}, now() + 24h * 3200);  // the sub-CA, not the root
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().detail, "certificate verification failed: certificate has expired (subject " +
                                        pki.sub.subject().to_string() + ")");

  // Tampering: flip one byte inside the subject's value.
  Bytes der = leaf->to_der();
  const std::string needle = "Example Widget";
  auto it = std::search(der.begin(), der.end(), needle.begin(), needle.end(),
                        [](std::byte a, char b) { return a == static_cast<std::byte>(b); });
  ASSERT_NE(it, der.end());
  *it = static_cast<std::byte>('X');
  auto tampered = Certificate::parse_der(der).value();
  EXPECT_EQ(cn_of(tampered.subject()), "Xxample Widget");
  const auto bad = tampered.verify_signature(pki.sub.public_key());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::crypto);
}

TEST(Builder, RefusesBadTemplates) {
  TestPki pki;
  const auto device = make_signer();
  auto tmpl = pki.idc_template(device->public_key());
  tmpl.serial = hex("80");
  EXPECT_EQ(make_certificate(tmpl, pki.sub, *pki.sub_signer).error().detail,
            "certificate: serial must be a positive integer");
  tmpl.serial = hex("0000");
  EXPECT_EQ(make_certificate(tmpl, pki.sub, *pki.sub_signer).error().detail,
            "certificate: serial must not be zero");
  tmpl.serial = make_serial();
  EXPECT_EQ(make_certificate(tmpl, pki.sub, *pki.root_signer).error().detail,
            "certificate: signer key does not match the issuer certificate");
  EXPECT_EQ(make_certificate(tmpl, std::nullopt, *pki.sub_signer).error().detail,
            "certificate: self-signed, but the signer key is not the subject key");
  tmpl.extended_key_usage = ExtendedKeyUsage{{"not-an-oid"}, false};
  EXPECT_EQ(make_certificate(tmpl, pki.sub, *pki.sub_signer).error().detail,
            "extendedKeyUsage: not a dotted OID: not-an-oid");
}

TEST(Builder, SerialsArePositiveSixteenOctets) {
  for (int i = 0; i < 2000; ++i) {
    const auto s = make_serial();
    ASSERT_EQ(s.size(), 16u);
    ASSERT_EQ(std::to_integer<unsigned>(s[0]) & 0x80, 0u);
    ASSERT_NE(s[0], std::byte{0});
  }
  EXPECT_NE(make_serial(), make_serial());
}

TEST(Builder, TimesSwitchToGeneralizedTimeIn2050) {
  auto signer = make_signer();
  CertificateTemplate t;
  t.subject = Name::make({{"CN", "t"}}).value();
  t.public_key = signer->public_key();
  t.serial = make_serial();
  t.not_before = at("2049-12-31T23:59:59Z");
  t.not_after = at("2050-01-01T00:00:00Z");
  const auto c = make_certificate(t, std::nullopt, *signer).value();
  EXPECT_EQ(ASN1_STRING_type(X509_get0_notBefore(c.native())), V_ASN1_UTCTIME);
  EXPECT_EQ(ASN1_STRING_type(X509_get0_notAfter(c.native())), V_ASN1_GENERALIZEDTIME);
  EXPECT_EQ(c.not_before(), t.not_before);
  EXPECT_EQ(c.not_after(), t.not_after);
  EXPECT_EQ(c.key_usage(), std::nullopt);
  EXPECT_EQ(c.subject_alt_name(), std::nullopt);
  EXPECT_TRUE(c.subject_key_id().has_value());
  EXPECT_EQ(c.authority_key_id(), std::nullopt);
}

TEST(Builder, Ed25519AndRsaSigners) {
  for (auto type : {crypto::KeyType::ed25519, crypto::KeyType::rsa2048}) {
    auto signer = make_signer(type);
    CertificateTemplate t;
    t.subject = Name::make({{"CN", "self"}}).value();
    t.public_key = signer->public_key();
    t.serial = make_serial();
    t.not_before = now();
    t.not_after = now() + 1h;
    auto c = make_certificate(t, std::nullopt, *signer);
    ASSERT_TRUE(c) << c.error().detail;
    EXPECT_EQ(c->signature_algorithm(),
              type == crypto::KeyType::ed25519 ? "ED25519" : "sha256WithRSAEncryption");
    EXPECT_TRUE(c->verify_signature(signer->public_key()));
  }
}

TEST(Builder, OpensslCliAcceptsThePki) {
  TestPki pki;
  const auto device = make_signer();
  auto leaf = make_certificate(pki.idc_template(device->public_key()), pki.sub, *pki.sub_signer).value();
  TempDir dir("hallmark-x509");
  write_text(dir / "root.pem", pki.root.to_pem());
  write_text(dir / "sub.pem", pki.sub.to_pem());
  write_text(dir / "leaf.pem", leaf.to_pem());
  std::ofstream(dir / "leaf.der", std::ios::binary)
      .write(reinterpret_cast<const char*>(leaf.to_der().data()),
             static_cast<std::streamsize>(leaf.to_der().size()));

  const auto verify = run("openssl verify -CAfile " + shell_quote(dir / "root.pem") + " -untrusted " +
                          shell_quote(dir / "sub.pem") + " " + shell_quote(dir / "leaf.pem"));
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_EQ(verify.output, dir / "leaf.pem" + ": OK\n");

  const auto text = run("openssl x509 -noout -text -in " + shell_quote(dir / "leaf.pem"));
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("othername: 1.3.6.1.5.5.7.8.4::"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Not After : Dec 31 23:59:59 9999 GMT"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("TLS Web Client Authentication"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Digital Signature, Key Agreement"), std::string::npos) << text.output;
  EXPECT_NE(
      text.output.find("DNS:widget.example, IP Address:192.0.2.7, URI:urn:dev:0123, email:dev@example.com"),
      std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("URI:http://pki.example.com/crl/idc.crl"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("OCSP - URI:http://pki.example.com/ocsp"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("CA Issuers - URI:http://pki.example.com/ca/idc.cer"), std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("Policy: 1.3.6.1.4.1.55555.2.1"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Version: 3 (0x2)"), std::string::npos) << text.output;

  const auto asn1 = run("openssl asn1parse -inform DER -in " + shell_quote(dir / "leaf.der"));
  ASSERT_EQ(asn1.exit_code, 0) << asn1.output;
  EXPECT_NE(asn1.output.find("GENERALIZEDTIME   :99991231235959Z"), std::string::npos) << asn1.output;
  // The hardwareModuleName is a real SEQUENCE { OID, OCTET STRING } inside the otherName.
  const auto hmn = run("openssl asn1parse -inform DER -in " + shell_quote(dir / "leaf.der") +
                       " -strparse $(openssl asn1parse -inform DER -in " + shell_quote(dir / "leaf.der") +
                       " | grep -A1 'X509v3 Subject Alternative Name' | tail -1 | cut -d: -f1 | tr -d ' ')");
  ASSERT_EQ(hmn.exit_code, 0) << hmn.output;
  EXPECT_NE(hmn.output.find(":1.3.6.1.5.5.7.8.4"), std::string::npos) << hmn.output;
  EXPECT_NE(hmn.output.find(":1.3.6.1.4.1.55555.1.1"), std::string::npos) << hmn.output;
  EXPECT_NE(hmn.output.find("[HEX DUMP]:0123F2408EA1FCF201"), std::string::npos) << hmn.output;
}

// ---------------------------------------------------------------------------------------------
// CSR

TEST(Csr, ChallengePasswordAndSanRoundTrip) {
  const auto device = make_signer();
  const auto subject = Name::make({{"serialNumber", "0123F2408EA1FCF201"}, {"CN", "Example Widget"}}).value();
  CsrOptions options;
  options.challenge_password = Secret("s3cret-PW:1");
  options.subject_alt_name =
      SubjectAltName{{GeneralName::dns("widget.example"), GeneralName::ip("2001:db8::7")}, false};
  auto csr = make_csr(subject, *device, options);
  ASSERT_TRUE(csr) << csr.error().detail;
  auto parsed = Csr::parse_pem(csr->to_pem()).value();
  EXPECT_TRUE(parsed.verify_self_signature());
  EXPECT_EQ(parsed.subject(), subject);
  EXPECT_EQ(parsed.public_key(), device->public_key());
  ASSERT_TRUE(parsed.challenge_password().has_value());
  EXPECT_EQ(parsed.challenge_password()->reveal(), "s3cret-PW:1");
  EXPECT_EQ(parsed.requested_subject_alt_name(), options.subject_alt_name);
  EXPECT_EQ(parsed.requested_basic_constraints(), std::nullopt);

  // A non-printable password is carried as UTF8String and reads back the same.
  options.challenge_password = Secret("pässwörd_!");
  options.subject_alt_name.reset();
  const auto utf8 = make_csr(subject, *device, options).value();
  EXPECT_EQ(utf8.challenge_password()->reveal(), "pässwörd_!");
  EXPECT_EQ(utf8.requested_subject_alt_name(), std::nullopt);

  // The openssl CLI agrees.
  TempDir dir("hallmark-x509");
  write_text(dir / "req.pem", csr->to_pem());
  const auto out = run("openssl req -noout -verify -text -in " + shell_quote(dir / "req.pem"));
  EXPECT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("challengePassword        :s3cret-PW:1"), std::string::npos) << out.output;
  EXPECT_NE(out.output.find("DNS:widget.example, IP Address:2001:DB8:0:0:0:0:0:7"), std::string::npos)
      << out.output;

  // A flipped signature byte breaks proof of possession.
  Bytes der = csr->to_der();
  der[der.size() - 3] ^= std::byte{0x01};
  auto broken = Csr::parse_der(der);
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->verify_self_signature().error().detail, "CSR: self-signature does not verify");
}

// ---------------------------------------------------------------------------------------------
// PKCS#7 certs-only

TEST(Pkcs7, CertsOnlyRoundTripsAndOpensslListsThem) {
  TestPki pki;
  const auto p7 = make_pkcs7_certs_only({pki.sub, pki.root});
  auto back = parse_pkcs7_certs_only(p7);
  ASSERT_TRUE(back) << back.error().detail;
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0], pki.sub);
  EXPECT_EQ((*back)[1], pki.root);
  EXPECT_TRUE(parse_pkcs7_certs_only(make_pkcs7_certs_only({})).value().empty());
  Bytes trailing = p7;
  trailing.push_back(std::byte{0});
  EXPECT_EQ(parse_pkcs7_certs_only(trailing).error().detail, "PKCS#7: trailing bytes after DER");
  EXPECT_EQ(parse_pkcs7_certs_only(pki.root.to_der()).error().code, Errc::invalid_input);

  TempDir dir("hallmark-x509");
  std::ofstream(dir / "certs.p7", std::ios::binary)
      .write(reinterpret_cast<const char*>(p7.data()), static_cast<std::streamsize>(p7.size()));
  const auto out = run("openssl pkcs7 -inform DER -print_certs -noout -in " + shell_quote(dir / "certs.p7"));
  EXPECT_EQ(out.exit_code, 0) << out.output;
  EXPECT_EQ(out.output,
            "subject=O = Example OEM, CN = Example IDC CA\nissuer=O = Example OEM, CN = Example Root\n\n"
            "subject=O = Example OEM, CN = Example Root\nissuer=O = Example OEM, CN = Example Root\n\n");
  // OpenSSL's own encoding of the same structure is byte-identical.
  const auto again = run("openssl pkcs7 -inform DER -outform DER -in " + shell_quote(dir / "certs.p7") +
                         " | cmp - " + shell_quote(dir / "certs.p7"));
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

// ---------------------------------------------------------------------------------------------
// CRL

TEST(Crl, ReasonsParseAndPrint) {
  EXPECT_EQ(parse_revocation_reason("keyCompromise").value(), RevocationReason::key_compromise);
  EXPECT_EQ(parse_revocation_reason("key-compromise").value(), RevocationReason::key_compromise);
  EXPECT_EQ(parse_revocation_reason("CESSATION_OF_OPERATION").value(),
            RevocationReason::cessation_of_operation);
  EXPECT_EQ(parse_revocation_reason("removeFromCRL").value(), RevocationReason::remove_from_crl);
  EXPECT_EQ(parse_revocation_reason("stolen").error().detail, "unknown revocation reason: stolen");
  EXPECT_EQ(to_string(RevocationReason::superseded), "superseded");
  EXPECT_EQ(to_string(RevocationReason::ca_compromise), "cACompromise");
  EXPECT_EQ(to_string(RevocationReason::aa_compromise), "aACompromise");
}

TEST(Crl, SignedWithReasonsAndOpensslRejectsTheRevokedCertificate) {
  TestPki pki;
  const auto device = make_signer();
  const auto revoked =
      make_certificate(pki.idc_template(device->public_key()), pki.sub, *pki.sub_signer).value();
  const auto good =
      make_certificate(pki.idc_template(make_signer()->public_key()), pki.sub, *pki.sub_signer).value();
  const auto t = now() - 10min;
  CrlTemplate tmpl;
  tmpl.crl_number = 42;
  tmpl.this_update = t;
  tmpl.next_update = t + 24h;
  tmpl.entries = {{revoked.serial(), t - 1h, RevocationReason::key_compromise},
                  {hex("0a0b0c"), t - 2h, std::nullopt},
                  {hex("7f01"), t - 3h, RevocationReason::superseded}};
  auto crl = make_crl(tmpl, pki.sub, *pki.sub_signer);
  ASSERT_TRUE(crl) << crl.error().detail;
  auto parsed = Crl::parse_pem(crl->to_pem()).value();
  EXPECT_EQ(parsed.to_der(), crl->to_der());
  EXPECT_EQ(parsed.issuer(), pki.sub.subject());
  EXPECT_EQ(parsed.crl_number(), 42u);
  EXPECT_EQ(parsed.this_update(), t);
  EXPECT_EQ(parsed.next_update(), t + 24h);
  EXPECT_EQ(parsed.authority_key_id(), pki.sub.subject_key_id());
  EXPECT_TRUE(parsed.verify_signature(pki.sub.public_key()));
  EXPECT_EQ(parsed.verify_signature(pki.root.public_key()).error().detail, "CRL signature does not verify");
  auto entries = parsed.entries();
  std::sort(entries.begin(), entries.end(),
            [](const CrlEntry& a, const CrlEntry& b) { return a.serial < b.serial; });
  auto expected = tmpl.entries;
  std::sort(expected.begin(), expected.end(),
            [](const CrlEntry& a, const CrlEntry& b) { return a.serial < b.serial; });
  EXPECT_EQ(entries, expected);
  EXPECT_EQ(make_crl(tmpl, pki.sub, *pki.root_signer).error().detail,
            "CRL: signer key does not match the issuer certificate");
  Bytes trailing = crl->to_der();
  trailing.push_back(std::byte{0});
  EXPECT_EQ(Crl::parse_der(trailing).error().detail, "CRL: trailing bytes after DER");

  TempDir dir("hallmark-x509");
  write_text(dir / "root.pem", pki.root.to_pem());
  write_text(dir / "sub.pem", pki.sub.to_pem());
  write_text(dir / "revoked.pem", revoked.to_pem());
  write_text(dir / "good.pem", good.to_pem());
  write_text(dir / "crl.pem", crl->to_pem());
  std::ofstream(dir / "crl.der", std::ios::binary)
      .write(reinterpret_cast<const char*>(crl->to_der().data()),
             static_cast<std::streamsize>(crl->to_der().size()));
  const auto text = run("openssl crl -inform DER -noout -text -in " + shell_quote(dir / "crl.der"));
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("Version 2 (0x1)"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Serial Number: " + upper(revoked.serial_hex())), std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("Key Compromise"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Superseded"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("Serial Number: 0A0B0C"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("X509v3 CRL Number: \n                42"), std::string::npos) << text.output;

  const std::string base = "openssl verify -crl_check -CAfile " + shell_quote(dir / "root.pem") +
                           " -untrusted " + shell_quote(dir / "sub.pem") + " -CRLfile " +
                           shell_quote(dir / "crl.pem") + " ";
  const auto bad = run(base + shell_quote(dir / "revoked.pem"));
  EXPECT_NE(bad.exit_code, 0) << bad.output;
  EXPECT_NE(bad.output.find("certificate revoked"), std::string::npos) << bad.output;
  const auto ok = run(base + shell_quote(dir / "good.pem"));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_EQ(ok.output, dir / "good.pem" + ": OK\n");
}

TEST(PathCache, LaterLeavesUnderTheSameIssuerTakeTheShortPathAndFailuresKeepTheirReason) {
  TestPki pki;
  TrustStore roots;
  roots.add_anchor(pki.root);
  PathCache cache(roots);
  auto leaf = [&](Seconds not_before) {
    auto t = pki.idc_template(make_signer()->public_key());
    t.not_before = not_before;
    return make_certificate(t, pki.sub, *pki.sub_signer).value();
  };
  const auto t = now();
  ASSERT_TRUE(cache.verify(leaf(t - 5min), {pki.sub}, t));
  EXPECT_EQ(cache.fast_verifications(), 0u);
  ASSERT_TRUE(cache.verify(leaf(t - 5min), {pki.sub}, t));
  ASSERT_TRUE(cache.verify(leaf(t - 5min), {pki.sub}, t));
  EXPECT_EQ(cache.fast_verifications(), 2u);

  // A leaf from a look-alike CA (same name, another key) listed with the real intermediate: refused,
  // with the reason the full verification gives.
  auto twin_signer = make_signer();
  CertificateTemplate twin_t;
  twin_t.subject = pki.sub.subject();
  twin_t.public_key = twin_signer->public_key();
  twin_t.serial = make_serial();
  twin_t.not_before = t - 1h;
  twin_t.not_after = t + 24h;
  twin_t.basic_constraints = BasicConstraints{true, 0, true};
  twin_t.key_usage = KeyUsage{kKeyCertSign | kCrlSign, true};
  const auto twin = make_certificate(twin_t, pki.root, *pki.root_signer).value();
  const auto forged =
      make_certificate(pki.idc_template(make_signer()->public_key()), twin, *twin_signer).value();
  const auto full = roots.verify(forged, {pki.sub}, t);
  ASSERT_FALSE(full);
  const auto cached = cache.verify(forged, {pki.sub}, t);
  ASSERT_FALSE(cached);
  EXPECT_EQ(cached.error().detail, full.error().detail);

  // An instant where the issuer and the leaf are valid but the root is not yet: the remembered
  // window sends it down the full path, which refuses it.
  CertificateTemplate early_t;
  early_t.subject = Name::make({{"O", "Example OEM"}, {"CN", "Early CA"}}).value();
  auto early_signer = make_signer();
  early_t.public_key = early_signer->public_key();
  early_t.serial = make_serial();
  early_t.not_before = t - 48h;
  early_t.not_after = t + 24h;
  early_t.basic_constraints = BasicConstraints{true, 0, true};
  early_t.key_usage = KeyUsage{kKeyCertSign | kCrlSign, true};
  const auto early = make_certificate(early_t, pki.root, *pki.root_signer).value();
  auto early_leaf = [&] {
    auto lt = pki.idc_template(make_signer()->public_key());
    lt.not_before = t - 47h;
    return make_certificate(lt, early, *early_signer).value();
  };
  ASSERT_TRUE(cache.verify(early_leaf(), {early}, t));
  const auto before_root = t - 24h;
  const auto refused = cache.verify(early_leaf(), {early}, before_root);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().detail, roots.verify(early_leaf(), {early}, before_root).error().detail);
  EXPECT_NE(refused.error().detail.find("not yet valid"), std::string::npos) << refused.error().detail;
}

TEST(PathCache, NameConstraintsAboveTheIssuerAreNeverSkipped) {
  // Built by the openssl CLI: a root that permits only DNS names under example.com, a CA below it.
  TempDir dir("hallmark-pathcache");
  const auto sh = [&](const std::string& cmd) {
    const auto r = run("cd " + shell_quote(dir.path().string()) + " && " + cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  };
  sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.pem "
     "-days 30 -subj /CN=Constrained-Root -addext basicConstraints=critical,CA:true "
     "-addext keyUsage=critical,keyCertSign,cRLSign "
     "-addext nameConstraints=critical,permitted\\;DNS:example.com 2>&1");
  sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.csr "
     "-subj /CN=Issuing-CA 2>&1");
  sh("printf 'basicConstraints=critical,CA:true\\nkeyUsage=critical,keyCertSign\\n' > ca.ext && "
     "openssl x509 -req -in ca.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 -extfile ca.ext "
     "-out ca.pem 2>&1");
  for (const std::string name : {"good", "bad"}) {
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + name + ".key -out " +
       name + ".csr -subj /CN=" + name + " 2>&1");
    sh("printf 'subjectAltName=DNS:" + std::string(name == "good" ? "a.example.com" : "a.example.org") +
       "\\n' > " + name + ".ext && openssl x509 -req -in " + name +
       ".csr -CA ca.pem -CAkey ca.key "
       "-CAcreateserial -days 30 -extfile " +
       name + ".ext -out " + name + ".pem 2>&1");
  }
  const auto root = Certificate::load(dir / "root.pem").value();
  const auto ca = Certificate::load(dir / "ca.pem").value();
  TrustStore roots;
  roots.add_anchor(root);
  PathCache cache(roots);
  ASSERT_TRUE(cache.verify(Certificate::load(dir / "good.pem").value(), {ca}, now()));
  const auto bad = cache.verify(Certificate::load(dir / "bad.pem").value(), {ca}, now());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().detail.find("permitted subtree violation"), std::string::npos) << bad.error().detail;
  EXPECT_EQ(cache.fast_verifications(), 0u);
}

TEST(Crl, ManyEntriesAreSortedAndKeepTheirReasons) {
  // Correctness at size; the speed of a 1,000,000-entry CRL is measured in bench/, not here.
  const std::size_t n = 20000;
  TestPki pki;
  CrlTemplate tmpl;
  tmpl.this_update = now();
  tmpl.next_update = now() + 24h;
  tmpl.entries.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto serial = make_serial();
    tmpl.entries.push_back(
        {std::move(serial), tmpl.this_update - std::chrono::seconds(i % 100000),
         i % 3 == 0 ? std::optional(RevocationReason::cessation_of_operation) : std::nullopt});
  }
  auto crl = make_crl(tmpl, pki.sub, *pki.sub_signer);
  ASSERT_TRUE(crl) << crl.error().detail;
  auto parsed = Crl::parse_der(crl->to_der()).value();
  const auto entries = parsed.entries();
  ASSERT_EQ(entries.size(), n);
  // Sorted once by serial.
  EXPECT_TRUE(std::is_sorted(entries.begin(), entries.end(),
                             [](const CrlEntry& a, const CrlEntry& b) { return a.serial < b.serial; }));
  EXPECT_EQ(
      std::count_if(entries.begin(), entries.end(), [](const CrlEntry& e) { return e.reason.has_value(); }),
      static_cast<long>((n + 2) / 3));
}

}  // namespace
}  // namespace hallmark::x509
