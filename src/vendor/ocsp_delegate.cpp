// hallmark vendor issue-ocsp-delegate (Option 1): the OEM's delegated OCSP responder certificate,
// issued by the vendor-held IDC sub-CA so that the OEM can answer OCSP for the IDCs the vendor issued.
#include <fmt/format.h>

#include <algorithm>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/vendor/vendor.hpp"
#include "hallmark/x509/csr.hpp"
#include "home.hpp"

namespace hallmark::vendor {

Result<OcspDelegateSummary> issue_ocsp_delegate(const OcspDelegateOptions& o, const Clock& clock) {
  if (o.role != "idc" && o.role != "bc")
    return fail(Errc::invalid_input, fmt::format("unknown sub-CA role '{}' (roles: bc, idc)", o.role));
  const auto home = HM_TRY(VendorHome::open(o.home));
  const auto ca = HM_TRY(home.subca(o.role));
  const auto data = HM_TRY(read_file(o.csr.string()));
  auto csr = x509::Csr::parse(data);
  if (!csr) return std::unexpected(csr.error().with_context(o.csr.string()));
  // The profile decides subject and extensions (id-kp-OCSPSigning, id-pkix-ocsp-nocheck); from the
  // request only its key and, for the CN, its subject's O (the OEM) are taken.
  ca::DefaultProfileOptions profile_options;
  profile_options.organization = home.config().organization;
  const auto profiles = ca::default_profiles(profile_options);
  const auto it = std::ranges::find(profiles, "ocsp-responder", &ca::Profile::name);
  if (it == profiles.end()) return fail(Errc::internal, "built-in profile ocsp-responder is missing");
  const auto oem = csr->subject().get("O").value_or("OEM");
  const std::map<std::string, std::string> variables{
      {"org", oem},
      {"cn",
       fmt::format("{} OCSP Delegate for {}", ca.certificate().subject().get("CN").value_or(o.role), oem)}};
  const ca::Issuer issuer(ca.certificate(), ca.signer, clock);
  const auto cert = HM_TRY(issuer.issue(ca::IssueRequest{*csr, variables, std::nullopt, std::nullopt}, *it));
  std::string pem = cert.to_pem();
  for (const auto& c : ca.chain) pem += c.to_pem();
  HM_TRY_VOID(write_text(o.out, pem));
  return OcspDelegateSummary{cert.subject().to_string(), cert.issuer().to_string(), cert.serial_hex(),
                             cert.not_after(), o.out};
}

}  // namespace hallmark::vendor
