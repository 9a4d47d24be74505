#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"
#include "hallmark/crypto/jws.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"

// Suites are named crypto_* so that `ctest -R crypto` selects this binary's tests.
namespace hallmark::crypto {

// Found by argument-dependent lookup: test names show "p256", not a byte dump.
void PrintTo(KeyType type, std::ostream* os) {
  *os << to_string(type);
}

namespace {

namespace fs = std::filesystem;

std::string shared_path(std::string_view relative) {
  return std::string(HALLMARK_SHARED_DIR) + std::string(relative);
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "hallmark-crypto-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }
  [[nodiscard]] std::string file(std::string_view name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

struct CommandResult {
  int status = -1;
  std::string output;
};

// Runs a shell command (the real openssl CLI), capturing stdout and stderr.
CommandResult run(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string quote(const std::string& s) {
  return "'" + s + "'";
}

X509Ptr read_certificate(const std::string& path) {
  const std::string pem = slurp(path);
  auto bio = make_read_bio(pem.data(), pem.size());
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

PublicKey certificate_key(X509* cert) {
  return PublicKey::adopt(X509_get_pubkey(cert));
}

Bytes certificate_der(X509* cert) {
  unsigned char* der = nullptr;
  const int n = i2d_X509(cert, &der);
  Bytes out(reinterpret_cast<std::byte*>(der), reinterpret_cast<std::byte*>(der) + n);
  OPENSSL_free(der);
  return out;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Key types

TEST(crypto_KeyType, GenerationGivesFreshKeys) {
  const auto a = PrivateKey::generate(KeyType::ec_p256);
  const auto b = PrivateKey::generate(KeyType::ec_p256);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(a->public_key() == b->public_key());
  EXPECT_NE(a->public_key().sha256_hex(), b->public_key().sha256_hex());
  EXPECT_TRUE(a->public_key() == a->public_key());
  EXPECT_FALSE(PublicKey() == a->public_key());
  EXPECT_TRUE(PublicKey() == PublicKey());
}

TEST(crypto_KeyType, ParsesNamesAndAliases) {
  EXPECT_EQ(parse_key_type("p256").value(), KeyType::ec_p256);
  EXPECT_EQ(parse_key_type("ec-p256").value(), KeyType::ec_p256);
  EXPECT_EQ(parse_key_type("P-256").value(), KeyType::ec_p256);
  EXPECT_EQ(parse_key_type("ec-p384").value(), KeyType::ec_p384);
  EXPECT_EQ(parse_key_type("Ed25519").value(), KeyType::ed25519);
  EXPECT_EQ(parse_key_type("rsa-2048").value(), KeyType::rsa2048);
  EXPECT_EQ(parse_key_type("rsa3072").value(), KeyType::rsa3072);
  EXPECT_EQ(parse_key_type("RSA4096").value(), KeyType::rsa4096);
  for (auto type : {KeyType::ec_p256, KeyType::ec_p384, KeyType::ed25519, KeyType::rsa2048, KeyType::rsa3072,
                    KeyType::rsa4096}) {
    EXPECT_EQ(parse_key_type(to_string(type)).value(), type);
  }
  const auto bad = parse_key_type("dsa1024");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_input);
  EXPECT_EQ(bad.error().detail,
            "unknown key type 'dsa1024' (expected p256, p384, ed25519, rsa2048, rsa3072 or rsa4096)");
}

struct KeyCase {
  KeyType type;
  KeyInfo::Algorithm algorithm;
  std::string curve;
  int bits;
  std::string description;
  DigestAlgorithm digest;
};

const std::vector<KeyCase>& key_cases() {
  static const std::vector<KeyCase> cases = {
      {KeyType::ec_p256, KeyInfo::Algorithm::ec, "P-256", 256, "EC P-256", DigestAlgorithm::sha256},
      {KeyType::ec_p384, KeyInfo::Algorithm::ec, "P-384", 384, "EC P-384", DigestAlgorithm::sha384},
      {KeyType::ed25519, KeyInfo::Algorithm::ed25519, "", 256, "Ed25519", DigestAlgorithm::none},
      {KeyType::rsa2048, KeyInfo::Algorithm::rsa, "", 2048, "RSA 2048", DigestAlgorithm::sha256},
      {KeyType::rsa3072, KeyInfo::Algorithm::rsa, "", 3072, "RSA 3072", DigestAlgorithm::sha256},
      {KeyType::rsa4096, KeyInfo::Algorithm::rsa, "", 4096, "RSA 4096", DigestAlgorithm::sha256},
  };
  return cases;
}

// One generated key per type for the whole binary: RSA 4096 generation takes seconds.
const PrivateKey& test_key(KeyType type) {
  static std::array<PrivateKey, 6> keys;
  auto& key = keys[static_cast<std::size_t>(type)];
  if (!key.native()) {
    auto generated = PrivateKey::generate(type);
    if (!generated) throw std::runtime_error(generated.error().detail);
    key = *generated;
  }
  return key;
}

void PrintTo(const KeyCase& c, std::ostream* os) {
  *os << to_string(c.type);
}

class KeyTest : public ::testing::TestWithParam<KeyCase> {};

TEST_P(KeyTest, GeneratesAndRoundTrips) {
  const auto& c = GetParam();
  const PrivateKey& key = test_key(c.type);
  const KeyInfo info = key.info();
  EXPECT_EQ(info.algorithm, c.algorithm);
  EXPECT_EQ(info.curve, c.curve);
  EXPECT_EQ(info.bits, c.bits);
  EXPECT_EQ(info.describe(), c.description);
  EXPECT_EQ(default_digest(info), c.digest);

  const auto pem = key.to_pem();
  ASSERT_TRUE(pem) << pem.error().detail;
  EXPECT_TRUE(pem->reveal().starts_with("-----BEGIN PRIVATE KEY-----\n"));
  const auto parsed = PrivateKey::parse_pem(pem->reveal());
  ASSERT_TRUE(parsed) << parsed.error().detail;
  EXPECT_TRUE(parsed->public_key() == key.public_key());
  EXPECT_EQ(EVP_PKEY_eq(parsed->native(), key.native()), 1);

  const auto der = key.to_der();
  ASSERT_TRUE(der);
  const auto from_der = PrivateKey::parse_der(as_bytes(der->reveal()));
  ASSERT_TRUE(from_der) << from_der.error().detail;
  EXPECT_TRUE(from_der->public_key() == key.public_key());

  const PublicKey pub = key.public_key();
  const Bytes pub_der = pub.to_der();
  ASSERT_FALSE(pub_der.empty());
  const auto pub_from_der = PublicKey::parse_der(pub_der);
  ASSERT_TRUE(pub_from_der) << pub_from_der.error().detail;
  EXPECT_TRUE(*pub_from_der == pub);
  EXPECT_EQ(pub_from_der->to_der(), pub_der);

  // The cached DER is exactly what OpenSSL's own encoder writes, whichever route built the key.
  unsigned char* ossl_der = nullptr;
  const int ossl_len = i2d_PUBKEY(key.native(), &ossl_der);
  ASSERT_GT(ossl_len, 0);
  const Bytes expected_der(reinterpret_cast<std::byte*>(ossl_der),
                           reinterpret_cast<std::byte*>(ossl_der) + ossl_len);
  OPENSSL_free(ossl_der);
  EXPECT_EQ(pub_der, expected_der);
  const auto* der_p = reinterpret_cast<const unsigned char*>(pub_der.data());
  const PublicKey provider_key =
      PublicKey::adopt(d2i_PUBKEY(nullptr, &der_p, static_cast<long>(pub_der.size())));
  ASSERT_NE(provider_key.native(), nullptr);
  EXPECT_EQ(provider_key.to_der(), pub_der);  // computed lazily, not given
  EXPECT_TRUE(provider_key == pub);
  EXPECT_EQ(provider_key.info().describe(), c.description);

  const std::string pub_pem = pub.to_pem();
  EXPECT_TRUE(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
  const auto from_pem = PublicKey::parse_pem(pub_pem);
  ASSERT_TRUE(from_pem) << from_pem.error().detail;
  EXPECT_TRUE(*from_pem == pub);

  EXPECT_EQ(pub.sha256_hex(), to_hex(sha256(pub_der)));
  EXPECT_EQ(pub.sha256_hex().size(), 64u);
  EXPECT_EQ(pub_from_der->info().describe(), c.description);

  // The public half carries no private key.
  EXPECT_EQ(PrivateKey::adopt(EVP_PKEY_dup(pub.native())).to_pem().has_value(), false);
}

TEST_P(KeyTest, SignAndVerify) {
  const auto& c = GetParam();
  const FileSigner signer(test_key(c.type), "memory");
  EXPECT_EQ(signer.reference(), "memory");
  EXPECT_TRUE(signer.public_key() == test_key(c.type).public_key());
  const Bytes data = to_bytes("device 0123F2408EA1FCF201");
  const auto signature = signer.sign(data, c.digest);
  ASSERT_TRUE(signature) << signature.error().detail;
  if (c.algorithm == KeyInfo::Algorithm::rsa) {
    EXPECT_EQ(signature->size(), static_cast<std::size_t>(c.bits / 8));
  } else if (c.algorithm == KeyInfo::Algorithm::ed25519) {
    EXPECT_EQ(signature->size(), 64u);
  } else {
    EXPECT_TRUE(ecdsa_der_to_raw(*signature, c.bits / 8)) << "ECDSA signatures are DER";
  }
  const auto ok = verify_signature(signer.public_key(), data, *signature, c.digest);
  EXPECT_TRUE(ok) << ok.error().detail;

  Bytes tampered = data;
  tampered.back() ^= std::byte{1};
  const auto bad = verify_signature(signer.public_key(), tampered, *signature, c.digest);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_input);
  EXPECT_EQ(bad.error().detail, "signature verification failed");

  Bytes bad_signature = *signature;
  bad_signature[bad_signature.size() / 2] ^= std::byte{0x40};
  EXPECT_FALSE(verify_signature(signer.public_key(), data, bad_signature, c.digest));

  const auto other = PrivateKey::generate(c.type == KeyType::rsa4096 ? KeyType::rsa2048 : c.type);
  ASSERT_TRUE(other);
  EXPECT_FALSE(verify_signature(other->public_key(), data, *signature, c.digest));
}

INSTANTIATE_TEST_SUITE_P(crypto, KeyTest, ::testing::ValuesIn(key_cases()),
                         [](const auto& info) { return std::string(to_string(info.param.type)); });

// ---------------------------------------------------------------------------------------------------
// Encrypted PKCS#8, checked against the openssl CLI

class EncryptedKeyTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(EncryptedKeyTest, RoundTripsAndOpensslReadsIt) {
  const PrivateKey& key = test_key(GetParam());
  for (const Kdf kdf : {Kdf::scrypt, Kdf::pbkdf2}) {
    SCOPED_TRACE(kdf == Kdf::scrypt ? "scrypt" : "PBKDF2");
    const Secret passphrase("correct horse battery staple");
    const auto pem = key.to_pem(&passphrase, kdf);
    ASSERT_TRUE(pem) << pem.error().detail;
    EXPECT_TRUE(pem->reveal().starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));

    const auto parsed = PrivateKey::parse_pem(pem->reveal(), &passphrase);
    ASSERT_TRUE(parsed) << parsed.error().detail;
    EXPECT_TRUE(parsed->public_key() == key.public_key());

    TempDir dir;
    spit(dir.file("key.pem"), pem->reveal());
    spit(dir.file("pass.txt"), "correct horse battery staple\n");
    const auto decrypted = run("openssl pkey -in " + quote(dir.file("key.pem")) +
                               " -passin file:" + quote(dir.file("pass.txt")) +
                               " -pubout -outform DER -out " + quote(dir.file("pub.der")));
    ASSERT_EQ(decrypted.status, 0) << decrypted.output;
    EXPECT_EQ(to_bytes(slurp(dir.file("pub.der"))), key.public_key().to_der());

    const auto asn1 = run("openssl asn1parse -in " + quote(dir.file("key.pem")));
    ASSERT_EQ(asn1.status, 0) << asn1.output;
    EXPECT_NE(asn1.output.find(":PBES2"), std::string::npos) << asn1.output;
    EXPECT_NE(asn1.output.find(":aes-256-cbc"), std::string::npos) << asn1.output;
    if (kdf == Kdf::scrypt) {
      EXPECT_NE(asn1.output.find(":scrypt"), std::string::npos) << asn1.output;
      EXPECT_EQ(asn1.output.find(":PBKDF2"), std::string::npos) << asn1.output;
      EXPECT_NE(asn1.output.find("INTEGER           :4000"), std::string::npos) << asn1.output;  // N = 2^14
    } else {
      EXPECT_NE(asn1.output.find(":PBKDF2"), std::string::npos) << asn1.output;
      EXPECT_NE(asn1.output.find(":hmacWithSHA256"), std::string::npos) << asn1.output;
      EXPECT_EQ(asn1.output.find(":scrypt"), std::string::npos) << asn1.output;
      EXPECT_NE(asn1.output.find("INTEGER           :0927C0"), std::string::npos) << asn1.output;  // 600000
    }
    EXPECT_NE(asn1.output.find("prim: OCTET STRING      [HEX DUMP]:"), std::string::npos);
    // The salt is 16 bytes: the first OCTET STRING after the KDF OID.
    const auto kdf_at = asn1.output.find(kdf == Kdf::scrypt ? ":scrypt" : ":PBKDF2");
    const auto salt_at = asn1.output.find("prim: OCTET STRING", kdf_at);
    ASSERT_NE(salt_at, std::string::npos);
    EXPECT_EQ(asn1.output.substr(salt_at - 7, 6), "l=  16") << asn1.output;
  }
}

INSTANTIATE_TEST_SUITE_P(crypto, EncryptedKeyTest,
                         ::testing::Values(KeyType::ec_p256, KeyType::ec_p384, KeyType::ed25519,
                                           KeyType::rsa2048, KeyType::rsa3072, KeyType::rsa4096),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(crypto_EncryptedKey, MissingOrWrongPassphraseIsRefusedClearly) {
  const PrivateKey& key = test_key(KeyType::ec_p256);
  const Secret passphrase("s3cret");
  const Secret wrong("s3cret!");
  for (const Kdf kdf : {Kdf::scrypt, Kdf::pbkdf2}) {
    const auto pem = key.to_pem(&passphrase, kdf);
    ASSERT_TRUE(pem);
    const auto missing = PrivateKey::parse_pem(pem->reveal());
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Errc::invalid_input);
    EXPECT_EQ(missing.error().detail, "private key is encrypted: a passphrase is required");
    const auto bad = PrivateKey::parse_pem(pem->reveal(), &wrong);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::invalid_input);
    EXPECT_EQ(bad.error().detail, "cannot decrypt private key: wrong passphrase or corrupt key");
  }
  const Secret empty;
  const auto refused = key.to_pem(&empty);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().detail, "cannot encrypt private key: empty passphrase");
}

TEST(crypto_PrivateKeyPem, ReadsTraditionalFormatsWrittenByOpenssl) {
  TempDir dir;
  const std::string pass = quote(dir.file("pass.txt"));
  spit(dir.file("pass.txt"), "traditional\n");
  const Secret passphrase("traditional");
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"EC PRIVATE KEY", "openssl ecparam -name prime256v1 -genkey -noout -out "},
      {"EC PRIVATE KEY", "openssl ecparam -name secp384r1 -genkey -out "},  // with an EC PARAMETERS block
      {"RSA PRIVATE KEY", "openssl genrsa -traditional -out "},
  };
  for (const auto& [label, command] : commands) {
    const std::string path = dir.file("trad.pem");
    const auto made = run(command + quote(path) + (label == "RSA PRIVATE KEY" ? " 2048" : ""));
    ASSERT_EQ(made.status, 0) << made.output;
    const std::string pem = slurp(path);
    ASSERT_NE(pem.find("-----BEGIN " + label + "-----"), std::string::npos) << pem;
    const auto key = PrivateKey::parse_pem(pem);
    ASSERT_TRUE(key) << command << ": " << key.error().detail;

    const auto pub =
        run("openssl pkey -in " + quote(path) + " -pubout -outform DER -out " + quote(dir.file("pub.der")));
    ASSERT_EQ(pub.status, 0) << pub.output;
    EXPECT_EQ(to_bytes(slurp(dir.file("pub.der"))), key->public_key().to_der());

    // Legacy PEM encryption (Proc-Type: 4,ENCRYPTED).
    const std::string tool = label == "RSA PRIVATE KEY" ? "rsa -traditional" : "ec";
    const auto encrypted = run("openssl " + tool + " -in " + quote(path) + " -aes256 -passout file:" + pass +
                               " -out " + quote(dir.file("enc.pem")));
    ASSERT_EQ(encrypted.status, 0) << encrypted.output;
    const std::string enc_pem = slurp(dir.file("enc.pem"));
    ASSERT_NE(enc_pem.find("Proc-Type: 4,ENCRYPTED"), std::string::npos) << enc_pem;
    const auto decrypted = PrivateKey::parse_pem(enc_pem, &passphrase);
    ASSERT_TRUE(decrypted) << decrypted.error().detail;
    EXPECT_TRUE(decrypted->public_key() == key->public_key());
    const auto missing = PrivateKey::parse_pem(enc_pem);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().detail, "private key is encrypted: a passphrase is required");
    const Secret wrong("wrong");
    const auto bad = PrivateKey::parse_pem(enc_pem, &wrong);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().detail, "cannot decrypt private key: wrong passphrase or corrupt key");
  }
}

TEST(crypto_PrivateKeyPem, RejectsWhatIsNotAPrivateKey) {
  const auto garbage = PrivateKey::parse_pem("not a key at all");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code, Errc::invalid_input);
  EXPECT_EQ(garbage.error().detail, "cannot parse private key: no PEM block found");

  const auto public_only = PrivateKey::parse_pem(test_key(KeyType::ec_p256).public_key().to_pem());
  ASSERT_FALSE(public_only);
  EXPECT_EQ(public_only.error().code, Errc::invalid_input);
  EXPECT_TRUE(public_only.error().detail.starts_with("cannot parse private key: "))
      << public_only.error().detail;

  const auto bad_der = PrivateKey::parse_der(to_bytes("\x30\x03\x02\x01\x00"));
  ASSERT_FALSE(bad_der);
  EXPECT_EQ(bad_der.error().code, Errc::invalid_input);

  const auto bad_pub = PublicKey::parse_der(to_bytes("\x30\x00"));
  ASSERT_FALSE(bad_pub);
  EXPECT_EQ(bad_pub.error().code, Errc::invalid_input);
  EXPECT_TRUE(bad_pub.error().detail.starts_with("cannot parse public key")) << bad_pub.error().detail;

  Bytes trailing = test_key(KeyType::ec_p256).public_key().to_der();
  trailing.push_back(std::byte{0});
  const auto with_trailing = PublicKey::parse_der(trailing);
  ASSERT_FALSE(with_trailing);
  EXPECT_EQ(with_trailing.error().detail,
            "cannot parse public key: trailing data after SubjectPublicKeyInfo");
}

TEST(crypto_PrivateKeyFile, SavesWithMode0600AndLoadsWithPassphraseSources) {
  TempDir dir;
  const PrivateKey& key = test_key(KeyType::ec_p256);
  const Secret passphrase("file passphrase");
  const std::string path = dir.file("ca.key");
  ASSERT_TRUE(save_private_key(path, key, &passphrase, Kdf::scrypt));
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(slurp(path).starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"));

  spit(dir.file("pass.txt"), "file passphrase\r\n");
  const auto from_file = load_private_key(path, "file:" + dir.file("pass.txt"));
  ASSERT_TRUE(from_file) << from_file.error().detail;
  EXPECT_TRUE(from_file->public_key() == key.public_key());

  ASSERT_EQ(::setenv("HALLMARK_CRYPTO_TEST_PASSPHRASE", "file passphrase", 1), 0);
  const auto from_env = load_private_key(path, "env:HALLMARK_CRYPTO_TEST_PASSPHRASE");
  ::unsetenv("HALLMARK_CRYPTO_TEST_PASSPHRASE");
  ASSERT_TRUE(from_env) << from_env.error().detail;
  EXPECT_TRUE(from_env->public_key() == key.public_key());

  const auto without = load_private_key(path);
  ASSERT_FALSE(without);
  EXPECT_EQ(without.error().detail, "private key is encrypted: a passphrase is required");

  const auto missing = load_private_key(dir.file("absent.key"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);

  const std::string plain = dir.file("plain.key");
  ASSERT_TRUE(save_private_key(plain, key));
  EXPECT_EQ(fs::status(plain).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  const auto signer = FileSigner::load(plain);
  ASSERT_TRUE(signer) << signer.error().detail;
  EXPECT_EQ((*signer)->reference(), "file:" + plain);
  EXPECT_TRUE((*signer)->public_key() == key.public_key());
}

// ---------------------------------------------------------------------------------------------------
// UKID

TEST(crypto_Ukid, MatchesReferenceVectorForBirthCertificate) {
  const std::string expected = trim(slurp(shared_path("/vectors/idc-8021ar/bc.ukid")));
  ASSERT_EQ(expected.size(), 64u);
  const X509Ptr bc = read_certificate(shared_path("/vectors/idc-8021ar/bc.pem"));
  ASSERT_TRUE(bc);
  const PublicKey key = certificate_key(bc.get());
  EXPECT_EQ(key.sha256_hex(), expected);
  EXPECT_EQ(key.info().describe(), "EC P-256");

  // The BC's own private key gives the same UKID.
  const auto private_key = PrivateKey::parse_pem(slurp(shared_path("/vectors/idc-8021ar/bc.key")));
  ASSERT_TRUE(private_key) << private_key.error().detail;
  EXPECT_EQ(private_key->public_key().sha256_hex(), expected);
  EXPECT_TRUE(private_key->public_key() == key);

  const auto root = PrivateKey::parse_pem(slurp(shared_path("/vectors/idc-8021ar/root.key")));
  ASSERT_TRUE(root);
  EXPECT_FALSE(root->public_key() == key);
  EXPECT_NE(root->public_key().sha256_hex(), expected);
}

// ---------------------------------------------------------------------------------------------------
// Digests, randomness, base64

TEST(crypto_Digest, KnownAnswers) {
  EXPECT_EQ(to_hex(sha1(as_bytes("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(to_hex(sha256(as_bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      to_hex(sha384(as_bytes("abc"))),
      "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(crypto_Random, ReturnsFreshBytes) {
  EXPECT_TRUE(random_bytes(0).empty());
  const Bytes a = random_bytes(32);
  const Bytes b = random_bytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

TEST(crypto_ConstantTime, ComparesContentAndLength) {
  EXPECT_TRUE(equal_constant_time(as_bytes("abc"), as_bytes("abc")));
  EXPECT_FALSE(equal_constant_time(as_bytes("abc"), as_bytes("abd")));
  EXPECT_FALSE(equal_constant_time(as_bytes("abc"), as_bytes("ab")));
  EXPECT_TRUE(equal_constant_time({}, {}));
}

struct Rfc4648Vector {
  std::string_view plain, base64, base64url;
};
// RFC 4648 §10.
constexpr Rfc4648Vector kRfc4648[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

TEST(crypto_Base64, Rfc4648Vectors) {
  for (const auto& v : kRfc4648) {
    EXPECT_EQ(base64_encode(as_bytes(v.plain)), v.base64);
    EXPECT_EQ(base64url_encode(as_bytes(v.plain)), v.base64url);
    const auto decoded = base64_decode(v.base64);
    ASSERT_TRUE(decoded) << v.base64 << ": " << decoded.error().detail;
    EXPECT_EQ(as_chars(*decoded), v.plain);
    const auto url = base64url_decode(v.base64url);
    ASSERT_TRUE(url) << v.base64url << ": " << url.error().detail;
    EXPECT_EQ(as_chars(*url), v.plain);
    const auto url_padded = base64url_decode(v.base64);  // same alphabet here; padding accepted
    ASSERT_TRUE(url_padded) << v.base64 << ": " << url_padded.error().detail;
    EXPECT_EQ(as_chars(*url_padded), v.plain);
  }
}

TEST(crypto_Base64, AlphabetsDiffer) {
  const Bytes bytes = {std::byte{0xfb}, std::byte{0xff}, std::byte{0xbf}};
  EXPECT_EQ(base64_encode(bytes), "+/+/");
  EXPECT_EQ(base64url_encode(bytes), "-_-_");
  EXPECT_EQ(base64_decode("+/+/").value(), bytes);
  EXPECT_EQ(base64url_decode("-_-_").value(), bytes);
  EXPECT_EQ(base64_decode("-_-_").error().detail, "base64: invalid character '-' at offset 0");
  EXPECT_EQ(base64url_decode("+/+/").error().detail, "base64url: invalid character '+' at offset 0");
}

TEST(crypto_Base64, WrapsAt64ColumnsAndToleratesWhitespace) {
  Bytes data(100);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 7);
  const std::string flat = base64_encode(data);
  ASSERT_EQ(flat.size(), 136u);
  const std::string wrapped = base64_encode(data, true);
  EXPECT_EQ(wrapped, flat.substr(0, 64) + "\n" + flat.substr(64, 64) + "\n" + flat.substr(128));
  EXPECT_EQ(base64_decode(wrapped).value(), data);
  EXPECT_EQ(base64_encode(as_bytes("foobar"), true), "Zm9vYmFy");

  std::string crlf;
  for (std::size_t i = 0; i < flat.size(); i += 10) crlf += flat.substr(i, 10) + "\r\n";
  EXPECT_EQ(base64_decode(crlf).value(), data);
  EXPECT_EQ(as_chars(base64_decode(" Zm 9v\tYg= =\r\n").value()), "foob");
  EXPECT_EQ(as_chars(base64_decode("\r\n").value()), "");
  EXPECT_EQ(as_chars(base64url_decode(" Zm9v\r\nYg ").value()), "foob");
}

TEST(crypto_Base64, RejectsBadAlphabetAndPadding) {
  const std::vector<std::pair<std::string_view, std::string_view>> cases = {
      {"Zm9v!", "base64: invalid character '!' at offset 4"},
      {"Zm9v\x01", "base64: invalid character 0x01 at offset 4"},
      {"Zm9v\xc3\xa9", "base64: invalid character 0xc3 at offset 4"},
      {"Zm9vY\vmFy", "base64: invalid character 0x0b at offset 5"},
      {"Zm9=v", "base64: data after padding at offset 4"},
      {"Zg==Zg==", "base64: data after padding at offset 4"},
      {"Zm9", "base64: length is not a multiple of 4"},
      {"Zg=", "base64: length is not a multiple of 4"},
      {"Zm9vYg", "base64: length is not a multiple of 4"},
      {"Zg===", "base64: too much padding"},
      {"Zm9v====", "base64: too much padding"},
      {"Zm8==", "base64: length is not a multiple of 4"},
      {"Z===", "base64: too much padding"},
      {"Zm9vY", "base64: truncated input"},
      {"Zh==", "base64: non-zero bits after the last byte"},
      {"Zm9=", "base64: non-zero bits after the last byte"},
      {"=", "base64: length is not a multiple of 4"},
  };
  for (const auto& [input, message] : cases) {
    const auto r = base64_decode(input);
    ASSERT_FALSE(r) << input;
    EXPECT_EQ(r.error().code, Errc::invalid_input);
    EXPECT_EQ(r.error().detail, message) << input;
  }
  const std::vector<std::pair<std::string_view, std::string_view>> url_cases = {
      {"Zm9vYg=", "base64url: length is not a multiple of 4"},
      {"Zm9vY", "base64url: truncated input"},
      {"Zm9vYg===", "base64url: too much padding"},
      {"Zh", "base64url: non-zero bits after the last byte"},
      {"Zm=9", "base64url: data after padding at offset 3"},
      {"Zm9v.", "base64url: invalid character '.' at offset 4"},
  };
  for (const auto& [input, message] : url_cases) {
    const auto r = base64url_decode(input);
    ASSERT_FALSE(r) << input;
    EXPECT_EQ(r.error().code, Errc::invalid_input);
    EXPECT_EQ(r.error().detail, message) << input;
  }
}

TEST(crypto_Base64, RoundTripsAllLengths) {
  for (std::size_t n = 0; n < 70; ++n) {
    const Bytes data = random_bytes(n);
    EXPECT_EQ(base64_decode(base64_encode(data)).value(), data);
    EXPECT_EQ(base64_decode(base64_encode(data, true)).value(), data);
    EXPECT_EQ(base64url_decode(base64url_encode(data)).value(), data);
    EXPECT_EQ(base64url_encode(data).find('='), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------------
// Signer details

TEST(crypto_Signer, RefusesDigestsThatDoNotFitTheKey) {
  const FileSigner ed(test_key(KeyType::ed25519), "memory");
  const auto with_digest = ed.sign(as_bytes("x"), DigestAlgorithm::sha256);
  ASSERT_FALSE(with_digest);
  EXPECT_EQ(with_digest.error().detail, "Ed25519 signs the message itself: digest must be none, got SHA-256");
  const FileSigner ec(test_key(KeyType::ec_p256), "memory");
  const auto without = ec.sign(as_bytes("x"), DigestAlgorithm::none);
  ASSERT_FALSE(without);
  EXPECT_EQ(without.error().detail, "digest none is only for Ed25519 keys");
}

TEST(crypto_Signer, DigestChoiceIsPartOfTheSignature) {
  const FileSigner signer(test_key(KeyType::ec_p256), "memory");
  const Bytes data = to_bytes("payload");
  const auto sig384 = signer.sign(data, DigestAlgorithm::sha384);
  ASSERT_TRUE(sig384);
  EXPECT_TRUE(verify_signature(signer.public_key(), data, *sig384, DigestAlgorithm::sha384));
  EXPECT_FALSE(verify_signature(signer.public_key(), data, *sig384, DigestAlgorithm::sha256));
  const auto sig512 = signer.sign(data, DigestAlgorithm::sha512);
  ASSERT_TRUE(sig512);
  EXPECT_TRUE(verify_signature(signer.public_key(), data, *sig512, DigestAlgorithm::sha512));
}

TEST(crypto_Signer, OpensslVerifiesOurSignatures) {
  TempDir dir;
  const std::string data = "signed by hallmark\n";
  spit(dir.file("data.txt"), data);
  for (const KeyType type : {KeyType::ec_p256, KeyType::ec_p384, KeyType::rsa2048, KeyType::ed25519}) {
    const FileSigner signer(test_key(type), "memory");
    const DigestAlgorithm digest = default_digest(signer.public_key().info());
    const auto signature = signer.sign(as_bytes(data), digest);
    ASSERT_TRUE(signature);
    spit(dir.file("sig.bin"), as_chars(*signature));
    spit(dir.file("pub.pem"), signer.public_key().to_pem());
    const std::string common =
        " -verify " + quote(dir.file("pub.pem")) + " -signature " + quote(dir.file("sig.bin"));
    const std::string command =
        digest == DigestAlgorithm::none
            ? "openssl pkeyutl -verify -pubin -inkey " + quote(dir.file("pub.pem")) + " -rawin -in " +
                  quote(dir.file("data.txt")) + " -sigfile " + quote(dir.file("sig.bin"))
            : "openssl dgst -" + std::string(digest == DigestAlgorithm::sha384 ? "sha384" : "sha256") +
                  common + " " + quote(dir.file("data.txt"));
    const auto verified = run(command);
    EXPECT_EQ(verified.status, 0) << to_string(type) << ": " << verified.output;
    EXPECT_NE(verified.output.find("Verified"), std::string::npos) << verified.output;
  }
}

TEST(crypto_Signer, SignsConcurrently) {
  const FileSigner signer(test_key(KeyType::ec_p256), "memory");
  std::vector<std::thread> threads;
  std::array<int, 4> failures{};
  for (std::size_t t = 0; t < failures.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string data = "thread " + std::to_string(t) + " message " + std::to_string(i);
        const auto sig = signer.sign(as_bytes(data), DigestAlgorithm::sha256);
        if (!sig || !verify_signature(signer.public_key(), as_bytes(data), *sig, DigestAlgorithm::sha256)) {
          ++failures[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, (std::array<int, 4>{}));
}

TEST(crypto_OpensslError, DrainsTheQueueIntoOneLine) {
  const auto bad = PublicKey::parse_der(to_bytes("\x30\x03\x02\x01\x00"));
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().detail.starts_with("cannot parse public key: ")) << bad.error().detail;
  EXPECT_EQ(bad.error().detail.find('\n'), std::string::npos);
  EXPECT_EQ(ERR_peek_error(), 0u);
  EXPECT_EQ(openssl_error("nothing"), "nothing: unknown OpenSSL error");
}

// ---------------------------------------------------------------------------------------------------
// ECDSA signature encodings

TEST(crypto_Ecdsa, ConvertsBetweenDerAndRaw) {
  Bytes raw(64, std::byte{0});
  raw[31] = std::byte{1};     // r = 1
  raw[32] = std::byte{0x80};  // s has its top bit set: DER needs a leading zero
  const auto der = ecdsa_raw_to_der(raw);
  ASSERT_TRUE(der);
  EXPECT_EQ(to_hex(*der),
            "3026020101022100"
            "80" +
                std::string(62, '0'));
  const auto back = ecdsa_der_to_raw(*der, 32);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, raw);

  const auto too_narrow = ecdsa_der_to_raw(*der, 16);
  ASSERT_FALSE(too_narrow);
  EXPECT_EQ(too_narrow.error().detail, "ECDSA signature: r or s longer than 16 bytes");

  const auto odd = ecdsa_raw_to_der(Bytes(63));
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().detail, "ECDSA signature: raw r||s must have an even, non-zero length, got 63");

  // BER with a long-form length is not DER.
  const Bytes ber_bytes = parse_hex("308106020101020101").value();
  const auto not_der = ecdsa_der_to_raw(ber_bytes, 32);
  ASSERT_FALSE(not_der);
  EXPECT_EQ(not_der.error().detail, "ECDSA signature: not a DER ECDSA-Sig-Value");
}

// ---------------------------------------------------------------------------------------------------
// JWS

FlattenedJws signed_example(const Signer& signer) {
  auto jws = sign_es256(as_bytes(R"({"hello":"world"})"), {{"typ", "JWT"}, {"kid", "k1"}},
                        {{"uniqueId", "x"}}, signer);
  if (!jws) throw std::runtime_error(jws.error().detail);
  return *jws;
}

TEST(crypto_Jws, SignsAndVerifies) {
  const FileSigner signer(test_key(KeyType::ec_p256), "memory");
  const FlattenedJws jws = signed_example(signer);
  EXPECT_EQ(as_chars(base64url_decode(jws.protected_b64).value()),
            R"({"alg":"ES256","kid":"k1","typ":"JWT"})");
  EXPECT_EQ(jws.protected_header["alg"], "ES256");
  EXPECT_EQ(jws.payload_b64, "eyJoZWxsbyI6IndvcmxkIn0");
  EXPECT_EQ(as_chars(jws.payload().value()), R"({"hello":"world"})");
  EXPECT_EQ(base64url_decode(jws.signature_b64).value().size(), 64u);
  EXPECT_EQ(jws.header, nlohmann::json({{"uniqueId", "x"}}));
  const auto ok = verify_es256(jws, signer.public_key());
  EXPECT_TRUE(ok) << ok.error().detail;

  const nlohmann::json serialized = jws.to_json();
  EXPECT_EQ(serialized.size(), 4u);
  const auto reparsed = parse_flattened_jws(nlohmann::json::parse(serialized.dump()));
  ASSERT_TRUE(reparsed) << reparsed.error().detail;
  EXPECT_EQ(reparsed->protected_b64, jws.protected_b64);
  EXPECT_EQ(reparsed->header, jws.header);
  EXPECT_TRUE(verify_es256(*reparsed, signer.public_key()));

  const FileSigner other(*PrivateKey::generate(KeyType::ec_p256), "memory");
  const auto wrong_key = verify_es256(jws, other.public_key());
  ASSERT_FALSE(wrong_key);
  EXPECT_EQ(wrong_key.error().detail, "JWS: ES256 signature does not verify");
}

TEST(crypto_Jws, TamperingIsDetected) {
  const FileSigner signer(test_key(KeyType::ec_p256), "memory");
  const FlattenedJws jws = signed_example(signer);

  FlattenedJws payload = jws;
  payload.payload_b64 = base64url_encode(as_bytes(R"({"hello":"World"})"));
  const auto bad_payload = verify_es256(payload, signer.public_key());
  ASSERT_FALSE(bad_payload);
  EXPECT_EQ(bad_payload.error().code, Errc::invalid_input);
  EXPECT_EQ(bad_payload.error().detail, "JWS: ES256 signature does not verify");

  FlattenedJws header = jws;
  header.protected_b64 = base64url_encode(as_bytes(R"({"alg":"ES256","kid":"k2","typ":"JWT"})"));
  const auto bad_header = verify_es256(header, signer.public_key());
  ASSERT_FALSE(bad_header);
  EXPECT_EQ(bad_header.error().detail, "JWS: ES256 signature does not verify");

  // Same JSON, different bytes: the received strings are what is signed.
  FlattenedJws spaced = jws;
  spaced.protected_b64 = base64url_encode(as_bytes(R"({"alg":"ES256", "kid":"k1","typ":"JWT"})"));
  EXPECT_FALSE(verify_es256(spaced, signer.public_key()));

  for (const std::size_t size : {63u, 65u, 0u, 72u}) {
    FlattenedJws short_sig = jws;
    Bytes raw = base64url_decode(jws.signature_b64).value();
    raw.resize(size);
    short_sig.signature_b64 = base64url_encode(raw);
    const auto r = verify_es256(short_sig, signer.public_key());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_input);
    EXPECT_EQ(r.error().detail, "ES256 signature must be 64 bytes, got " + std::to_string(size));
  }

  FlattenedJws none = jws;
  none.protected_b64 = base64url_encode(as_bytes(R"({"alg":"none"})"));
  none.protected_header = {{"alg", "ES256"}};  // the decoded copy does not decide
  EXPECT_EQ(verify_es256(none, signer.public_key()).error().detail, R"(JWS: alg must be ES256, got "none")");

  FlattenedJws no_alg = jws;
  no_alg.protected_b64 = base64url_encode(as_bytes(R"({"typ":"JWT"})"));
  EXPECT_EQ(verify_es256(no_alg, signer.public_key()).error().detail,
            R"(JWS: protected header has no "alg")");
}

TEST(crypto_Jws, NeedsP256Keys) {
  const FileSigner p384(test_key(KeyType::ec_p384), "memory");
  const auto signed_384 = sign_es256(as_bytes("x"), nlohmann::json::object(), nlohmann::json::object(), p384);
  ASSERT_FALSE(signed_384);
  EXPECT_EQ(signed_384.error().detail, "ES256 needs a P-256 key, got EC P-384");

  const FileSigner signer(test_key(KeyType::ec_p256), "memory");
  const FlattenedJws jws = signed_example(signer);
  const auto with_rsa = verify_es256(jws, test_key(KeyType::rsa2048).public_key());
  ASSERT_FALSE(with_rsa);
  EXPECT_EQ(with_rsa.error().detail, "ES256 needs a P-256 key, got RSA 2048");
}

TEST(crypto_Jws, ParseNamesTheBadPart) {
  const nlohmann::json good = {{"protected", "eyJhbGciOiJFUzI1NiJ9"}, {"payload", ""}, {"signature", "AAAA"}};
  ASSERT_TRUE(parse_flattened_jws(good));
  EXPECT_EQ(parse_flattened_jws(good)->header, nlohmann::json::object());

  const auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json j = good;
    j[key] = std::move(value);
    const auto r = parse_flattened_jws(j);
    return r ? std::string("ok") : r.error().detail;
  };
  const auto without = [&](const char* key) {
    nlohmann::json j = good;
    j.erase(key);
    const auto r = parse_flattened_jws(j);
    return r ? std::string("ok") : r.error().detail;
  };
  EXPECT_EQ(parse_flattened_jws(nlohmann::json::array()).error().detail, "JWS: not a JSON object");
  EXPECT_EQ(without("protected"), R"(JWS: missing "protected")");
  EXPECT_EQ(without("payload"), R"(JWS: missing "payload")");
  EXPECT_EQ(without("signature"), R"(JWS: missing "signature")");
  EXPECT_EQ(with("payload", 5), R"(JWS: "payload" must be a string)");
  EXPECT_EQ(with("protected", nullptr), R"(JWS: "protected" must be a string)");
  EXPECT_EQ(with("payload", "ab!c"), R"(JWS: "payload": base64url: invalid character '!' at offset 2)");
  EXPECT_EQ(with("signature", "A"), R"(JWS: "signature": base64url: truncated input)");
  EXPECT_EQ(with("protected", "e30+"), R"(JWS: "protected": base64url: invalid character '+' at offset 3)");
  EXPECT_EQ(with("protected", base64url_encode(as_bytes("[1]"))), R"(JWS: "protected" is not a JSON object)");
  EXPECT_EQ(with("protected", base64url_encode(as_bytes("{\"alg\":"))),
            R"(JWS: "protected" is not valid JSON)");
  EXPECT_EQ(with("header", nlohmann::json::array()), R"(JWS: "header" must be a JSON object)");
  EXPECT_EQ(with("header", {{"kid", "1"}}), "ok");
}

// The Microchip manifest: a JSON array of flattened JWS signed by one of Microchip's manifest signers,
// named by the SHA-256 of its certificate in "x5t#S256".
TEST(crypto_Jws, VerifiesMicrochipManifest) {
  const nlohmann::json manifest = nlohmann::json::parse(
      slurp(shared_path("/samples/microchip/pytrustplatform_ATECC608A-MAH4I_manifest.json")));
  ASSERT_TRUE(manifest.is_array());
  ASSERT_EQ(manifest.size(), 2u);

  struct SignerCert {
    std::string name;
    std::string thumbprint;
    PublicKey key;
  };
  std::vector<SignerCert> signers;
  for (const auto& entry : fs::directory_iterator(shared_path("/samples/microchip/signers"))) {
    if (entry.path().extension() != ".crt") continue;
    const X509Ptr cert = read_certificate(entry.path().string());
    ASSERT_TRUE(cert) << entry.path();
    signers.push_back({entry.path().filename().string(),
                       base64url_encode(sha256(certificate_der(cert.get()))), certificate_key(cert.get())});
  }
  ASSERT_EQ(signers.size(), 5u);

  const std::array<std::string_view, 2> unique_ids = {"01230390b3d1450c01", "0123d26e26e688c901"};
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    const auto jws = parse_flattened_jws(manifest[i]);
    ASSERT_TRUE(jws) << jws.error().detail;
    EXPECT_EQ(jws->protected_header["alg"], "ES256");
    EXPECT_EQ(jws->header["uniqueId"], unique_ids[i]);
    const std::string thumbprint = jws->protected_header["x5t#S256"].get<std::string>();
    EXPECT_EQ(thumbprint, "U9TKmw4f3iG56OGR8YV_Ncxlk0DlG0FyL9aDlwfbv1A");
    int matched = 0;
    for (const auto& signer : signers) {
      const auto verified = verify_es256(*jws, signer.key);
      if (signer.thumbprint == thumbprint) {
        ++matched;
        EXPECT_EQ(signer.name, "MCHP_manifest_signer_2_Aug-15-2019_Aug-15-2020.crt");
        EXPECT_TRUE(verified) << verified.error().detail;
      } else {
        ASSERT_FALSE(verified) << signer.name;
        EXPECT_EQ(verified.error().detail, "JWS: ES256 signature does not verify") << signer.name;
      }
    }
    EXPECT_EQ(matched, 1);

    const auto payload = nlohmann::json::parse(as_chars(jws->payload().value()));
    EXPECT_EQ(payload["uniqueId"], unique_ids[i]);

    // A changed byte of the payload breaks the entry.
    const auto& real_signer = *std::find_if(signers.begin(), signers.end(),
                                            [&](const SignerCert& s) { return s.thumbprint == thumbprint; });
    FlattenedJws tampered = *jws;
    std::string text(as_chars(jws->payload().value()));
    text.replace(text.find(std::string(unique_ids[i])), 2, "ff");
    tampered.payload_b64 = base64url_encode(as_bytes(text));
    EXPECT_FALSE(verify_es256(tampered, real_signer.key));
  }
}

TEST(Sha256, AbcVector) {
  // FIPS 180-2 appendix B.1 / RFC 6234 TEST1.
  Sha256 h;
  h.update(as_bytes(std::string_view("abc")));
  EXPECT_EQ(to_hex(h.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, EmptyInput) {
  Sha256 h;
  EXPECT_EQ(to_hex(h.finish()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, StreamingMatchesOneShotOverTheConcatenation) {
  const Bytes data = random_bytes(10000);
  for (std::size_t chunk : {1u, 7u, 64u, 65u, 1000u, 10000u}) {
    Sha256 h;
    for (std::size_t i = 0; i < data.size(); i += chunk) {
      h.update(ByteView(data).subspan(i, std::min(chunk, data.size() - i)));
    }
    h.update({});
    EXPECT_EQ(h.finish(), sha256(data)) << "chunk " << chunk;
  }
}

TEST(Sha256, ReusableAfterFinishAndMovable) {
  Sha256 h;
  h.update(as_bytes(std::string_view("first message")));
  EXPECT_EQ(h.finish(), sha256(as_bytes(std::string_view("first message"))));
  h.update(as_bytes(std::string_view("abc")));
  Sha256 moved = std::move(h);
  EXPECT_EQ(to_hex(moved.finish()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(PublicKey, CopiesShareOneDerComputedOnceAcrossThreads) {
  const auto key = PrivateKey::generate(KeyType::ec_p256);
  ASSERT_TRUE(key);
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key->native(), &der);
  ASSERT_GT(len, 0);
  const Bytes expected(reinterpret_cast<std::byte*>(der), reinterpret_cast<std::byte*>(der) + len);
  OPENSSL_free(der);
  const auto* p = reinterpret_cast<const unsigned char*>(expected.data());
  const PublicKey shared = PublicKey::adopt(d2i_PUBKEY(nullptr, &p, len));  // DER not known yet
  std::vector<std::string> seen(4);
  {
    std::vector<std::jthread> threads;
    for (std::size_t t = 0; t < seen.size(); ++t) {
      threads.emplace_back([&, t] {
        const PublicKey copy = shared;
        for (int i = 0; i < 20; ++i) {
          // Keys made on several threads at once: each thread has its own keygen and import contexts.
          const auto k = PrivateKey::generate(KeyType::ec_p256);
          if (!k || k->public_key().to_der().empty()) return;
        }
        seen[t] = copy.sha256_hex();
      });
    }
  }
  for (const auto& s : seen) EXPECT_EQ(s, to_hex(sha256(expected)));
}

}  // namespace
}  // namespace hallmark::crypto
