#pragma once
// The audit chain's canonical encoding, public so that other tools can verify an exported log.
//
//   canonical(id, e) = field(decimal id) || field(decimal unix time) || field(actor) || field(action)
//                      || field(object) || field(outcome) || field(reason) || field(request_id)
//   field(s)         = 4-byte big-endian length of s || the UTF-8 bytes of s
//   hash             = SHA-256(prev_hash || canonical(id, e)), prev_hash of record 1 = 32 zero bytes
#include "hallmark/core/bytes.hpp"
#include "hallmark/store/records.hpp"

namespace hallmark::store {

inline constexpr std::size_t kAuditHashSize = 32;

[[nodiscard]] Bytes canonical_audit_content(Id id, const AuditEvent& event);
[[nodiscard]] Bytes audit_hash(ByteView prev_hash, Id id, const AuditEvent& event);
[[nodiscard]] inline Bytes audit_genesis_hash() {
  return Bytes(kAuditHashSize, std::byte{0});
}

}  // namespace hallmark::store
