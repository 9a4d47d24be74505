#include "pkcs11.hpp"

#include <dlfcn.h>
#include <fmt/format.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include "hallmark/core/secret.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"

namespace hallmark::device::detail {

namespace {

// The parts of an RFC 7512 URI the agent uses; the rest is passed to the engine as written.
struct Pkcs11Uri {
  std::string path;  // "token=...;object=...", percent-encoded as given
  std::string token;
  std::string module_path;
  std::string pin_source;
};

Result<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return fail(Errc::invalid_input, "pkcs11 URI: bad %-escape");
    const auto hex = parse_hex(s.substr(i + 1, 2));
    if (!hex || hex->size() != 1) return fail(Errc::invalid_input, "pkcs11 URI: bad %-escape");
    out += static_cast<char>((*hex)[0]);
    i += 2;
  }
  return out;
}

std::string percent_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

Result<Pkcs11Uri> parse_uri(std::string_view uri) {
  if (!uri.starts_with("pkcs11:")) return fail(Errc::invalid_input, "not a pkcs11: URI");
  uri.remove_prefix(7);
  Pkcs11Uri u;
  const auto q = uri.find('?');
  u.path = std::string(uri.substr(0, q));
  const auto each = [](std::string_view list, char sep, auto&& fn) -> Status {
    while (!list.empty()) {
      const auto end = list.find(sep);
      const auto item = list.substr(0, end);
      const auto eq = item.find('=');
      if (eq == std::string_view::npos)
        return fail(Errc::invalid_input, fmt::format("pkcs11 URI: '{}' has no '='", item));
      auto value = HM_TRY(percent_decode(item.substr(eq + 1)));
      fn(item.substr(0, eq), std::move(value));
      if (end == std::string_view::npos) break;
      list.remove_prefix(end + 1);
    }
    return {};
  };
  HM_TRY_VOID(each(uri.substr(0, q), ';', [&](std::string_view k, std::string v) {
    if (k == "token") u.token = std::move(v);
  }));
  if (q != std::string_view::npos) {
    HM_TRY_VOID(each(uri.substr(q + 1), '&', [&](std::string_view k, std::string v) {
      if (k == "module-path") u.module_path = std::move(v);
      if (k == "pin-source") u.pin_source = std::move(v);
    }));
  }
  if (u.module_path.empty()) {
    if (const char* m = std::getenv("HALLMARK_PKCS11_MODULE"); m != nullptr && *m != '\0') u.module_path = m;
  }
  return u;
}

Result<Secret> pin_of(const Pkcs11Uri& u, const std::string& pin_source) {
  if (!pin_source.empty()) return read_secret(pin_source);
  if (!u.pin_source.empty()) {
    // RFC 7512 pin-source is a file name or a file: URI.
    return read_secret(u.pin_source.starts_with("file:") || u.pin_source.starts_with("env:")
                           ? u.pin_source
                           : "file:" + u.pin_source);
  }
  return fail(Errc::invalid_input, "a PIN is needed for the PKCS#11 token: --pin-source file:PATH|env:NAME");
}

// One libp11 engine per module, initialised once; the engine is not thread-safe for set-up.
std::mutex engine_mutex;

Result<ENGINE*> engine_for(const std::string& module) {
  static std::map<std::string, ENGINE*> engines;
  if (auto it = engines.find(module); it != engines.end()) return it->second;
  ENGINE* e = ENGINE_by_id("pkcs11");
  if (e == nullptr) {
    return crypto::openssl_fail(Errc::unavailable, "the OpenSSL pkcs11 engine (libp11) is not installed");
  }
  if (!module.empty() && ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module.c_str(), 0) != 1) {
    ENGINE_free(e);
    return crypto::openssl_fail(Errc::invalid_input, "pkcs11 engine: MODULE_PATH");
  }
  if (ENGINE_init(e) != 1) {
    ENGINE_free(e);
    return crypto::openssl_fail(Errc::unavailable,
                                fmt::format("pkcs11 engine: cannot load module '{}'", module));
  }
  engines.emplace(module, e);
  return e;
}

class Pkcs11Signer final : public crypto::Signer {
 public:
  Pkcs11Signer(crypto::EvpPkeyPtr key, crypto::PublicKey public_key, std::string uri)
      : key_(std::move(key)), public_key_(std::move(public_key)), uri_(std::move(uri)) {}
  [[nodiscard]] const crypto::PublicKey& public_key() const override { return public_key_; }
  [[nodiscard]] Result<Bytes> sign(ByteView data, crypto::DigestAlgorithm digest) const override {
    const EVP_MD* md = digest == crypto::DigestAlgorithm::sha384   ? EVP_sha384()
                       : digest == crypto::DigestAlgorithm::sha512 ? EVP_sha512()
                                                                   : EVP_sha256();
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    std::size_t n = 0;
    const auto* in = reinterpret_cast<const unsigned char*>(data.data());
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &n, in, data.size()) != 1) {
      return crypto::openssl_fail(Errc::crypto, "PKCS#11 sign");
    }
    Bytes out(n);
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n, in, data.size()) != 1) {
      return crypto::openssl_fail(Errc::crypto, "PKCS#11 sign");
    }
    out.resize(n);
    return out;
  }
  [[nodiscard]] EVP_PKEY* native_private_key() const noexcept override { return key_.get(); }
  [[nodiscard]] std::string reference() const override { return uri_; }

 private:
  crypto::EvpPkeyPtr key_;
  crypto::PublicKey public_key_;
  std::string uri_;
};

std::string trimmed_label(const unsigned char* label, std::size_t n) {
  std::string s(reinterpret_cast<const char*>(label), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

Result<std::shared_ptr<const crypto::Signer>> load_pkcs11_key(const std::string& uri,
                                                              const std::string& pin_source) {
  const auto u = HM_TRY(parse_uri(uri));
  const auto pin = HM_TRY(pin_of(u, pin_source));
  const std::lock_guard lock(engine_mutex);
  ENGINE* e = HM_TRY(engine_for(u.module_path));
  std::string pin_text(pin.reveal());
  const int pin_ok = ENGINE_ctrl_cmd_string(e, "PIN", pin_text.c_str(), 0);
  const Secret wipe(std::move(pin_text));  // wipes the copy
  if (pin_ok != 1) return crypto::openssl_fail(Errc::internal, "pkcs11 engine: PIN");
  const std::string engine_uri = "pkcs11:" + u.path;  // our query attributes stay with us
  crypto::EvpPkeyPtr key(ENGINE_load_private_key(e, engine_uri.c_str(), nullptr, nullptr));
  if (!key) return crypto::openssl_fail(Errc::not_found, fmt::format("no private key at {}", engine_uri));
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key.get(), &der);
  if (n <= 0) return crypto::openssl_fail(Errc::crypto, "PKCS#11 key: public key");
  auto pub = crypto::PublicKey::parse_der(
      ByteView(reinterpret_cast<const std::byte*>(der), static_cast<std::size_t>(n)));
  OPENSSL_free(der);
  if (!pub) return std::unexpected(pub.error());
  return std::shared_ptr<const crypto::Signer>(
      std::make_shared<Pkcs11Signer>(std::move(key), std::move(*pub), uri));
}

Result<std::string> generate_pkcs11_key(const std::string& token_uri, const std::string& pin_source,
                                        const std::string& label) {
  const auto u = HM_TRY(parse_uri(token_uri));
  if (u.token.empty())
    return fail(Errc::invalid_input, fmt::format("{}: names no token (token=...)", token_uri));
  const auto pin = HM_TRY(pin_of(u, pin_source));
  const std::string module = u.module_path.empty() ? "p11-kit-proxy.so" : u.module_path;
  const std::lock_guard lock(engine_mutex);
  void* lib = ::dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return fail(Errc::unavailable, fmt::format("cannot load PKCS#11 module {}", module));
  const auto close_lib = std::unique_ptr<void, decltype([](void* l) { ::dlclose(l); })>(lib);
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(lib, "C_GetFunctionList"));
  CK_FUNCTION_LIST_PTR f = nullptr;
  if (get_list == nullptr || get_list(&f) != CKR_OK)
    return fail(Errc::unavailable, module + " is not a PKCS#11 module");
  const auto failed = [](std::string_view what, CK_RV rv) {
    return fail(Errc::unavailable, fmt::format("PKCS#11 {}: CKR 0x{:x}", what, rv));
  };
  CK_RV rv = f->C_Initialize(nullptr);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) return failed("C_Initialize", rv);
  // The engine of this process may use the module too: finalize only what this call initialised.
  const bool finalize = rv == CKR_OK;
  Result<std::string> out = [&]() -> Result<std::string> {
    CK_ULONG count = 0;
    if (auto r = f->C_GetSlotList(CK_TRUE, nullptr, &count); r != CKR_OK) return failed("C_GetSlotList", r);
    std::vector<CK_SLOT_ID> slots(count);
    if (auto r = f->C_GetSlotList(CK_TRUE, slots.data(), &count); r != CKR_OK)
      return failed("C_GetSlotList", r);
    std::optional<CK_SLOT_ID> slot;
    for (CK_ULONG i = 0; i < count; ++i) {
      CK_TOKEN_INFO info{};
      if (f->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
          trimmed_label(info.label, sizeof info.label) == u.token) {
        slot = slots[i];
        break;
      }
    }
    if (!slot) return fail(Errc::not_found, fmt::format("no PKCS#11 token labelled '{}'", u.token));
    CK_SESSION_HANDLE session = 0;
    if (auto r = f->C_OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session);
        r != CKR_OK) {
      return failed("C_OpenSession", r);
    }
    const auto close = std::unique_ptr<CK_SESSION_HANDLE, std::function<void(CK_SESSION_HANDLE*)>>(
        &session, [f](CK_SESSION_HANDLE* s) { f->C_CloseSession(*s); });
    std::string pin_text(pin.reveal());
    rv = f->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin_text.data()), pin_text.size());
    Secret wipe(std::move(pin_text));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) return failed("C_Login", rv);
    CK_MECHANISM mechanism{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};  // prime256v1
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    auto id = crypto::random_bytes(8);
    std::string label_text = label;
    CK_ATTRIBUTE pub[] = {
        {CKA_EC_PARAMS, p256, sizeof p256}, {CKA_TOKEN, &yes, sizeof yes},
        {CKA_VERIFY, &yes, sizeof yes},     {CKA_LABEL, label_text.data(), label_text.size()},
        {CKA_ID, id.data(), id.size()},
    };
    CK_ATTRIBUTE priv[] = {
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_SIGN, &yes, sizeof yes},      {CKA_LABEL, label_text.data(), label_text.size()},
        {CKA_ID, id.data(), id.size()},
    };
    CK_OBJECT_HANDLE hpub = 0;
    CK_OBJECT_HANDLE hpriv = 0;
    rv = f->C_GenerateKeyPair(session, &mechanism, pub, std::size(pub), priv, std::size(priv), &hpub, &hpriv);
    if (rv != CKR_OK) return failed("C_GenerateKeyPair", rv);
    std::string uri =
        "pkcs11:token=" + percent_encode(u.token) + ";object=" + percent_encode(label) + ";type=private";
    if (!u.module_path.empty()) uri += "?module-path=" + percent_encode(u.module_path);
    return uri;
  }();
  if (finalize) f->C_Finalize(nullptr);
  return out;
}

}  // namespace hallmark::device::detail
