#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/est/server.hpp"

namespace hallmark::est {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<Bytes> decode_body(std::string_view body) {
  std::string_view text = trim(body);
  std::string stripped;
  if (text.starts_with("-----BEGIN ")) {
    // PEM armour: keep the lines between the BEGIN and END lines.
    const auto begin_end = text.find('\n');
    const auto end = text.rfind("-----END ");
    if (begin_end == std::string_view::npos || end == std::string_view::npos || end < begin_end) {
      return fail(Errc::invalid_input, "body: PEM armour without an END line");
    }
    text = text.substr(begin_end + 1, end - begin_end - 1);
  }
  if (text.empty()) return fail(Errc::invalid_input, "body is empty (expected base64 DER)");
  auto der = crypto::base64_decode(text);
  if (!der) return fail(Errc::invalid_input, "body is not base64: " + der.error().detail);
  if (der->empty()) return fail(Errc::invalid_input, "body is empty (expected base64 DER)");
  return der;
}

std::string encode_certs_only(const std::vector<x509::Certificate>& certs, bool wrap) {
  return crypto::base64_encode(x509::make_pkcs7_certs_only(certs), wrap);
}

bool has_media_type(std::string_view content_type, std::string_view expected) noexcept {
  auto type = trim(content_type.substr(0, content_type.find(';')));
  return http::iequals(type, expected);
}

std::optional<Secret> basic_password(const http::Headers& headers) {
  const auto value = headers.get("Authorization");
  if (!value) return std::nullopt;
  auto v = trim(*value);
  if (v.size() < 6 || !http::iequals(v.substr(0, 6), "Basic ")) return std::nullopt;
  auto decoded = crypto::base64_decode(trim(v.substr(6)));
  if (!decoded) return std::nullopt;
  Secret pair(to_string(*decoded));
  std::fill(decoded->begin(), decoded->end(), std::byte{0});
  const auto colon = pair.reveal().find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return Secret(std::string(pair.reveal().substr(colon + 1)));
}

std::string make_serverkeygen_body(const Secret& pkcs8_der, const x509::Certificate& certificate, bool wrap) {
  // Base64 never contains '-', so the fixed boundary cannot occur inside a part.
  std::string body;
  body.reserve(2048);
  body += fmt::format("--{}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                      kServerKeygenBoundary);
  body += crypto::base64_encode(as_bytes(pkcs8_der.reveal()), wrap);
  body += fmt::format("\r\n--{}\r\nContent-Type: {}\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                      kServerKeygenBoundary, kCertsOnly);
  body += encode_certs_only({certificate}, wrap);
  body += fmt::format("\r\n--{}--\r\n", kServerKeygenBoundary);
  return body;
}

ra::Peer to_peer(const http::PeerIdentity& peer) {
  ra::Peer p;
  p.chain = peer.chain;
  p.expired = peer.expired;
  if (!peer.channel_binding.empty()) {
    p.channel_binding_type = std::string(http::to_string(peer.channel_binding.type));
    p.channel_binding = peer.channel_binding.value;
  }
  p.via_proxy = peer.via_proxy;
  p.verified = peer.verified && !peer.via_proxy;
  p.remote_address = peer.remote_address;
  return p;
}

int status_of(const ra::Refusal& refusal) noexcept {
  switch (refusal.code) {
    case Errc::invalid_input: return 400;
    case Errc::unauthenticated: return 401;
    case Errc::forbidden: return 403;
    case Errc::not_found: return 404;
    case Errc::conflict: return 409;
    case Errc::unavailable: return 503;
    case Errc::crypto:
    case Errc::internal: return 500;
  }
  return 500;
}

http::Response to_problem(const ra::Refusal& refusal) {
  const int status = status_of(refusal);
  // Internal details stay in the log and the audit record.
  const std::string detail =
      status == 500 ? "internal error; see the server log for this request id" : refusal.reason;
  auto r = http::problem(status, refusal.problem, detail);
  if (refusal.retry_after) r.headers.set("Retry-After", std::to_string(refusal.retry_after->count()));
  if (status == 401) r.headers.set("WWW-Authenticate", "Basic realm=\"hallmark-est\"");
  return r;
}

}  // namespace hallmark::est
