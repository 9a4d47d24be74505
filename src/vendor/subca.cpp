// BYORoT: the vendor holds the key of a sub-CA the OEM signs (hallmark ca sign-subca).
#include <fmt/format.h>

#include <algorithm>

#include "hallmark/vendor/vendor.hpp"
#include "hallmark/x509/csr.hpp"
#include "home.hpp"

namespace hallmark::vendor {
namespace fs = std::filesystem;

namespace {

Status check_role(std::string_view role) {
  if (role != "bc" && role != "idc") {
    return fail(Errc::invalid_input, fmt::format("sub-CA role must be bc or idc (got '{}')", role));
  }
  return {};
}

std::string upper(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(),
                         [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

}  // namespace

Result<RequestSubcaSummary> request_subca(const RequestSubcaOptions& options) {
  HM_TRY_VOID(check_role(options.role));
  if (options.oem.empty())
    return fail(Errc::invalid_input, "the OEM's name is required (it goes into the CN)");
  const auto home = HM_TRY(VendorHome::open(options.home));
  const fs::path dir = home.subca_dir(options.role);
  std::error_code ec;
  if (fs::exists(dir / "chain.pem", ec)) {
    return fail(Errc::conflict, fmt::format("a {} sub-CA is already installed ({})", upper(options.role),
                                            (dir / "chain.pem").string()));
  }
  if (fs::exists(dir / "key.pem", ec)) {
    return fail(Errc::conflict,
                fmt::format("a {} sub-CA request is pending ({}): install its certificate with "
                            "'hallmark vendor install-subca --role {}'",
                            upper(options.role), (dir / "request.csr").string(), options.role));
  }
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::internal, fmt::format("cannot create {}: {}", dir.string(), ec.message()));

  const auto& org = home.config().organization;
  const auto subject = HM_TRY(x509::Name::make(
      {{"O", org}, {"CN", fmt::format("{} {} CA for {}", org, upper(options.role), options.oem)}}));
  const auto key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
  const crypto::FileSigner signer(key, "memory");
  const auto csr = HM_TRY(x509::make_csr(subject, signer));

  RequestSubcaSummary summary;
  summary.role = options.role;
  summary.subject = subject.to_string();
  summary.key = dir / "key.pem";
  summary.csr = options.out.empty() ? dir / "request.csr" : options.out;
  HM_TRY_VOID(home.save_key(summary.key, key));
  HM_TRY_VOID(write_text(dir / "request.csr", csr.to_pem()));
  if (summary.csr != dir / "request.csr") HM_TRY_VOID(write_text(summary.csr, csr.to_pem()));
  return summary;
}

Result<InstallSubcaSummary> install_subca(const InstallSubcaOptions& options, const Clock& clock) {
  HM_TRY_VOID(check_role(options.role));
  const auto home = HM_TRY(VendorHome::open(options.home));
  const fs::path dir = home.subca_dir(options.role);
  std::error_code ec;
  if (fs::exists(dir / "chain.pem", ec)) {
    return fail(Errc::conflict, fmt::format("a {} sub-CA is already installed ({})", upper(options.role),
                                            (dir / "chain.pem").string()));
  }
  if (!fs::exists(dir / "key.pem", ec)) {
    return fail(
        Errc::not_found,
        fmt::format("no pending {} sub-CA request: run 'hallmark vendor request-subca --role {}' first",
                    upper(options.role), options.role));
  }
  const auto text = HM_TRY(read_text_file(options.chain_pem.string()));
  auto parsed = x509::Certificate::parse_pem_chain(text);
  if (!parsed) return std::unexpected(parsed.error().with_context(options.chain_pem.string()));
  const std::vector<x509::Certificate>& chain = *parsed;
  const x509::Certificate& cert = chain.front();

  const auto key = HM_TRY(home.load_key(dir / "key.pem"));
  if (!(cert.public_key() == key.public_key())) {
    return fail(
        Errc::invalid_input,
        fmt::format("{}: the certificate's key does not match the pending {} sub-CA key (it was signed "
                    "for another request)",
                    cert.subject().to_string(), upper(options.role)));
  }
  if (!cert.is_ca()) {
    return fail(Errc::invalid_input,
                fmt::format("{} is not a CA certificate (basicConstraints CA is not true)",
                            cert.subject().to_string()));
  }
  const x509::Certificate& root = chain.back();
  if (chain.size() < 2 || !root.is_self_issued() || !root.verify_signature(root.public_key())) {
    return fail(Errc::invalid_input, fmt::format("{}: the chain must end with the OEM's self-signed root "
                                                 "(sub-CA first, root last)",
                                                 options.chain_pem.string()));
  }
  x509::TrustStore anchors;
  anchors.add_anchor(root);
  const std::vector<x509::Certificate> intermediates(chain.begin() + 1, chain.end() - 1);
  if (auto path = anchors.verify(cert, intermediates, clock.now()); !path) {
    return std::unexpected(path.error().with_context(options.chain_pem.string()));
  }

  std::string pem;
  for (const auto& c : chain) pem += c.to_pem();
  HM_TRY_VOID(write_text(dir / "chain.pem", pem));
  InstallSubcaSummary summary;
  summary.role = options.role;
  summary.subject = cert.subject().to_string();
  summary.issuer = cert.issuer().to_string();
  summary.root_subject = root.subject().to_string();
  summary.not_after = cert.not_after();
  summary.chain_length = chain.size();
  summary.chain = dir / "chain.pem";
  return summary;
}

}  // namespace hallmark::vendor
