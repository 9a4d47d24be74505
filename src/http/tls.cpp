#include "tls.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/handle.hpp"
#include "hallmark/crypto/key.hpp"

namespace hallmark::http::detail {
namespace {

int notes_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Client certificates are requested, not demanded. A certificate that is only expired (itself or one
// in its chain) passes and is flagged for the RA's grace rules; a pinned proxy certificate passes
// whatever its chain; any other failure fails the handshake.
int verify_callback(int preverify_ok, X509_STORE_CTX* store) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* notes = ssl != nullptr ? static_cast<HandshakeNotes*>(SSL_get_ex_data(ssl, notes_index())) : nullptr;
  if (notes == nullptr) return 0;
  if (preverify_ok == 1) return 1;
  const int error = X509_STORE_CTX_get_error(store);
  if (error == X509_V_ERR_CERT_HAS_EXPIRED) {
    notes->expired = true;
    return 1;
  }
  if (notes->context != nullptr && notes->context->is_pinned_proxy(X509_STORE_CTX_get0_cert(store))) return 1;
  notes->error = error;
  notes->error_depth = X509_STORE_CTX_get_error_depth(store);
  return 0;
}

std::string field_error(const ServerConfig& c, std::string_view field, std::string_view what) {
  return "[" + c.section + "] " + std::string(field) + ": " + std::string(what);
}

Result<std::string> read_config_file(const ServerConfig& c, std::string_view field, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::invalid_input, field_error(c, field, "cannot open " + path));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return fail(Errc::invalid_input, field_error(c, field, "cannot read " + path));
  return text;
}

}  // namespace

TlsContext::TlsContext() : context_(boost::asio::ssl::context::tls_server) {}
TlsContext::~TlsContext() {
  EVP_MD_free(sha256_);
}

Result<std::unique_ptr<TlsContext>> TlsContext::make(const ServerConfig& c) {
  std::unique_ptr<TlsContext> self(new TlsContext());
  SSL_CTX* ctx = self->context_.native_handle();
  self->sha256_ = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (self->sha256_ == nullptr) return crypto::openssl_fail(Errc::internal, "SHA-256");

  const int min_version = c.min_tls_version == TlsVersion::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
  SSL_CTX_set_min_proto_version(ctx, min_version);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // Renegotiation would change the peer mid-connection and the meaning of tls-unique.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_PRIORITIZE_CHACHA);
  static constexpr unsigned char kSessionContext[] = "hallmark";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  if (!c.session_tickets) {
    // A TLS 1.3 ticket costs about a third of a full handshake's CPU; devices rarely resume.
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  if (SSL_CTX_set1_groups_list(ctx, c.groups.c_str()) != 1) {
    ERR_clear_error();
    return fail(Errc::invalid_input, field_error(c, "groups", "not a valid group list: " + c.groups));
  }
  if (SSL_CTX_set_cipher_list(ctx, c.ciphers_tls12.c_str()) != 1) {
    ERR_clear_error();
    return fail(Errc::invalid_input, field_error(c, "ciphers", "no usable cipher in: " + c.ciphers_tls12));
  }

  // Certificate chain and key.
  if (c.tls_cert.empty())
    return fail(Errc::invalid_input, field_error(c, "tls_cert", "required when tls is on"));
  if (c.tls_key.empty())
    return fail(Errc::invalid_input, field_error(c, "tls_key", "required when tls is on"));
  auto pem = read_config_file(c, "tls_cert", c.tls_cert);
  if (!pem) return std::unexpected(pem.error());
  auto chain = x509::Certificate::parse_pem_chain(*pem);
  if (!chain || chain->empty()) {
    return fail(Errc::invalid_input, field_error(c, "tls_cert", "no certificate in " + c.tls_cert));
  }
  if (SSL_CTX_use_certificate(ctx, chain->front().native()) != 1) {
    return fail(Errc::invalid_input, field_error(c, "tls_cert", crypto::openssl_error(c.tls_cert)));
  }
  for (std::size_t i = 1; i < chain->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, (*chain)[i].native()) != 1) {
      return fail(Errc::invalid_input, field_error(c, "tls_cert", crypto::openssl_error(c.tls_cert)));
    }
  }
  if (!std::ifstream(c.tls_key)) {
    return fail(Errc::invalid_input, field_error(c, "tls_key", "cannot open " + c.tls_key));
  }
  auto key = crypto::load_private_key(c.tls_key, c.tls_key_passphrase);
  if (!key) return fail(Errc::invalid_input, field_error(c, "tls_key", key.error().detail));
  if (SSL_CTX_use_PrivateKey(ctx, key->native()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return fail(Errc::invalid_input,
                field_error(c, "tls_key", "does not match the certificate in " + c.tls_cert));
  }

  // Client certificates: one trust store for the process, loaded once.
  for (const auto& fp : c.trusted_proxies.fingerprints) {
    auto bytes = parse_hex(fp);
    if (!bytes || bytes->size() != 32) {
      return fail(Errc::invalid_input, field_error(c, "trusted_proxies", "not a SHA-256 fingerprint: " + fp));
    }
    self->proxy_pins_.push_back(std::move(*bytes));
  }
  self->proxy_issuers_ = c.trusted_proxies.issuers;
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  // Anchors may be intermediate CAs (a device CA whose root is not configured).
  X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
  auto add_anchor = [&](const x509::Certificate& cert) -> Status {
    if (cert.native() == nullptr)
      return fail(Errc::invalid_input, field_error(c, "client_anchors", "empty certificate"));
    if (X509_STORE_add_cert(store, cert.native()) != 1) {
      const auto e = ERR_peek_last_error();
      // The same anchor listed by two aliases.
      if (ERR_GET_REASON(e) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        return fail(Errc::invalid_input,
                    field_error(c, "client_anchors", crypto::openssl_error("add anchor")));
      }
      ERR_clear_error();
      return {};
    }
    SSL_CTX_add_client_CA(ctx, cert.native());
    return {};
  };
  for (const auto& a : c.client_anchors) HM_TRY_VOID(add_anchor(a));
  for (const auto& a : c.trusted_proxies.issuers) HM_TRY_VOID(add_anchor(a));
  if (!c.client_anchors.empty() || !c.trusted_proxies.empty()) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_callback);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return self;
}

void TlsContext::attach(SSL* ssl, HandshakeNotes& notes) const {
  notes.context = this;
  SSL_set_ex_data(ssl, notes_index(), &notes);
}

bool TlsContext::is_pinned_proxy(X509* cert) const {
  if (proxy_pins_.empty() || cert == nullptr) return false;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, sha256_, md, &len) != 1) {
    ERR_clear_error();
    return false;
  }
  const ByteView digest(reinterpret_cast<const std::byte*>(md), len);
  return std::ranges::any_of(proxy_pins_, [&](const Bytes& pin) { return std::ranges::equal(pin, digest); });
}

std::vector<x509::Certificate> to_certificates(STACK_OF(X509) * chain) {
  std::vector<x509::Certificate> out;
  const int n = chain != nullptr ? sk_X509_num(chain) : 0;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    X509* x = sk_X509_value(chain, i);
    unsigned char* der = nullptr;
    const int len = i2d_X509(x, &der);
    if (len <= 0) {
      ERR_clear_error();
      continue;
    }
    const auto* b = reinterpret_cast<const std::byte*>(der);
    Bytes bytes(b, b + len);
    OPENSSL_free(der);
    X509_up_ref(x);
    out.push_back(x509::Certificate::adopt(x, std::move(bytes)));
  }
  return out;
}

TlsPeer TlsContext::peer(SSL* ssl, const HandshakeNotes& notes) const {
  TlsPeer out;
  PeerIdentity& id = out.identity;
  const bool tls13 = SSL_version(ssl) == TLS1_3_VERSION;
  id.tls_version = tls13 ? TlsVersion::tls1_3 : TlsVersion::tls1_2;
  if (tls13) {
    static constexpr char kLabel[] = "EXPORTER-Channel-Binding";
    Bytes value(32);
    if (SSL_export_keying_material(ssl, reinterpret_cast<unsigned char*>(value.data()), value.size(), kLabel,
                                   sizeof kLabel - 1, nullptr, 0, 0) == 1) {
      id.channel_binding = {ChannelBinding::Type::tls_exporter, std::move(value)};
    } else {
      ERR_clear_error();
    }
  } else {
    // tls-unique: the first Finished of the handshake, the client's unless the session was resumed.
    unsigned char buf[EVP_MAX_MD_SIZE];
    const std::size_t n = SSL_session_reused(ssl) != 0 ? SSL_get_finished(ssl, buf, sizeof buf)
                                                       : SSL_get_peer_finished(ssl, buf, sizeof buf);
    if (n > 0 && n <= sizeof buf) {
      const auto* b = reinterpret_cast<const std::byte*>(buf);
      id.channel_binding = {ChannelBinding::Type::tls_unique, Bytes(b, b + n)};
    }
  }

  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return out;
  STACK_OF(X509)* verified = SSL_get0_verified_chain(ssl);
  if (!notes.expired) {
    bool proxy = is_pinned_proxy(leaf);
    if (!proxy && !proxy_issuers_.empty() && verified != nullptr) {
      for (int i = 1; i < sk_X509_num(verified) && !proxy; ++i) {
        X509* issuer = sk_X509_value(verified, i);
        proxy = std::ranges::any_of(
            proxy_issuers_, [&](const x509::Certificate& c) { return X509_cmp(issuer, c.native()) == 0; });
      }
    }
    if (proxy) {
      out.trusted_proxy = true;
      unsigned char md[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      if (X509_digest(leaf, sha256_, md, &len) == 1) {
        id.proxy_fingerprint = to_hex(ByteView(reinterpret_cast<const std::byte*>(md), len));
      }
      id.channel_binding = {};  // binds the proxy's connection, not the device's
      return out;
    }
  }
  id.expired = notes.expired;
  if (verified != nullptr && sk_X509_num(verified) > 0) {
    id.chain = to_certificates(verified);
    // The verify callback forgives some errors; the result keeps the last one it saw.
    id.verified = SSL_get_verify_result(ssl) == X509_V_OK && !notes.expired;
  } else {
    crypto::X509StackPtr one(sk_X509_new_null());
    X509_up_ref(leaf);
    sk_X509_push(one.get(), leaf);
    id.chain = to_certificates(one.get());
  }
  return out;
}

Result<std::string> url_decode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) {
      return fail(Errc::invalid_input, "truncated percent-escape");
    }
    const int hi = hex(text[i + 1]);
    const int lo = hex(text[i + 2]);
    if (hi < 0 || lo < 0) return fail(Errc::invalid_input, "bad percent-escape");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Result<std::vector<x509::Certificate>> parse_forwarded_certificate(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::vector<x509::Certificate>{};
  auto pem = url_decode(value);
  if (!pem) return std::unexpected(pem.error());
  auto chain = x509::Certificate::parse_pem_chain(*pem);
  if (!chain) return std::unexpected(chain.error());
  if (chain->empty()) return fail(Errc::invalid_input, "no certificate");
  return chain;
}

}  // namespace hallmark::http::detail
