#include <cstring>

#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/store/audit.hpp"
#include "hallmark/store/records.hpp"
#include "sql.hpp"

namespace hallmark::store {

std::string_view to_string(DeviceState s) noexcept {
  switch (s) {
    case DeviceState::received: return "received";
    case DeviceState::mounted: return "mounted";
    case DeviceState::enrolled: return "enrolled";
    case DeviceState::retired: return "retired";
  }
  return "received";
}

Result<DeviceState> parse_device_state(std::string_view s) {
  for (auto v : {DeviceState::received, DeviceState::mounted, DeviceState::enrolled, DeviceState::retired})
    if (to_string(v) == s) return v;
  return fail(Errc::invalid_input, "unknown device state: " + std::string(s));
}

std::string_view to_string(EndEntityState s) noexcept {
  switch (s) {
    case EndEntityState::new_: return "new";
    case EndEntityState::generated: return "generated";
    case EndEntityState::revoked: return "revoked";
    case EndEntityState::pending: return "pending";
  }
  return "new";
}

Result<EndEntityState> parse_end_entity_state(std::string_view s) {
  for (auto v :
       {EndEntityState::new_, EndEntityState::generated, EndEntityState::revoked, EndEntityState::pending})
    if (to_string(v) == s) return v;
  return fail(Errc::invalid_input, "unknown end entity state: " + std::string(s));
}

std::string_view to_string(CertificateStatus s) noexcept {
  return s == CertificateStatus::good ? "good" : "revoked";
}

std::string_view to_string(Outcome o) noexcept {
  return o == Outcome::accepted ? "accepted" : "refused";
}

namespace {
void put_field(Bytes& out, std::string_view s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::byte>((n >> shift) & 0xff));
  auto b = as_bytes(s);
  out.insert(out.end(), b.begin(), b.end());
}
}  // namespace

Bytes canonical_audit_content(Id id, const AuditEvent& e) {
  Bytes out;
  out.reserve(64 + e.actor.size() + e.action.size() + e.object.size() + e.reason.size() +
              e.request_id.size());
  put_field(out, std::to_string(id));
  put_field(out, std::to_string(e.time.time_since_epoch().count()));
  put_field(out, e.actor);
  put_field(out, e.action);
  put_field(out, e.object);
  put_field(out, to_string(e.outcome));
  put_field(out, e.reason);
  put_field(out, e.request_id);
  return out;
}

Bytes audit_hash(ByteView prev_hash, Id id, const AuditEvent& event) {
  Bytes input(prev_hash.begin(), prev_hash.end());
  const Bytes content = canonical_audit_content(id, event);
  input.insert(input.end(), content.begin(), content.end());
  return crypto::sha256(input);
}

namespace sql {

std::int64_t Row::i64(std::size_t i) const {
  const auto& v = values_.at(i);
  if (const auto* n = std::get_if<std::int64_t>(&v)) return *n;
  if (const auto* s = std::get_if<std::string>(&v)) return s->empty() ? 0 : std::stoll(*s);
  return 0;
}

std::string Row::text(std::size_t i) const {
  const auto& v = values_.at(i);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* n = std::get_if<std::int64_t>(&v)) return std::to_string(*n);
  if (const auto* b = std::get_if<Bytes>(&v)) return hallmark::to_string(*b);
  return {};
}

Bytes Row::blob(std::size_t i) const {
  const auto& v = values_.at(i);
  if (const auto* b = std::get_if<Bytes>(&v)) return *b;
  if (const auto* s = std::get_if<std::string>(&v)) return to_bytes(*s);
  return {};
}

}  // namespace sql

}  // namespace hallmark::store
