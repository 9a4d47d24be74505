#pragma once
// The revocation service of `hallmark serve`: the plain-HTTP routes (/crl/<ca>.crl, /ocsp) and the
// periodic job that follows the audit log, regenerates CRLs (on the node holding the "crl" lease),
// serves each CA's latest CRL from the store and writes it to files for nginx. See docs/revocation.md.
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/http/router.hpp"
#include "hallmark/revocation/responder.hpp"
#include "hallmark/revocation/revocation.hpp"
#include "hallmark/store/store.hpp"

namespace hallmark::revocation {

struct ServiceOptions {
  std::chrono::seconds crl_interval{3600};  // a CA's CRL is regenerated this often, and after revocations
  std::chrono::seconds next_update{86400};  // CRL nextUpdate = thisUpdate + this
  std::chrono::milliseconds poll_interval{1000};  // how often the audit log is followed
  std::filesystem::path crl_dir;  // <ca>.crl (DER) and nginx.pem (PEM bundle); empty: no files
  std::string reload_command;     // run through /bin/sh after the files change; empty: none
  std::string node_id;            // lease holder name (unique per node)
  ResponderOptions responder;
};

class Service final {
 public:
  // `cas`: every CA hallmark answers for; those with a crl_signer get CRLs, those with a responder
  // signer get OCSP.
  Service(store::Store& store, std::vector<CaSource> cas, const Clock& clock, ServiceOptions options);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // One pass now (CRLs made or loaded, files written, inventory indexed), then the periodic job.
  [[nodiscard]] Status start();
  void stop();

  // GET /crl/{file}, POST /ocsp, GET /ocsp/* (RFC 6960 Appendix A.1).
  void install(http::Router& router);
  [[nodiscard]] http::Response crl_response(std::string_view file, const http::Request& request) const;
  [[nodiscard]] http::Response ocsp_response(const http::Request& request);

  // The RA revoked a BC after issuance (Option 2): recorded now as a revoked certificate of the BC
  // CA that issued it, so the next CRL lists it and OCSP answers revoked.
  [[nodiscard]] Status revoke_bc(const store::DeviceRecord& device, const std::string& request_id);

  [[nodiscard]] OcspResponder& responder() { return responder_; }
  // The CRL served for `ca` right now (nullopt: none yet).
  [[nodiscard]] std::optional<x509::Crl> served_crl(std::string_view ca) const;

 private:
  struct Served {
    x509::Crl crl;
    std::int64_t number = 0;
    Seconds this_update{};
    Seconds next_update{};
  };
  void run();
  [[nodiscard]] Status pass(bool first);
  [[nodiscard]] Status follow_audit(bool& revoked);
  [[nodiscard]] Status refresh_served(bool& changed);
  [[nodiscard]] Status write_files();
  void wake();

  store::Store& store_;
  std::vector<CaSource> cas_;
  const Clock& clock_;
  ServiceOptions options_;
  OcspResponder responder_;

  mutable std::mutex served_mutex_;
  std::map<std::string, Served, std::less<>> served_;

  // CAs whose CRL must be regenerated for a revocation: the CRL number served when it was seen
  // (job thread only).
  std::map<std::string, std::int64_t> pending_;
  store::Id audit_after_ = 0;

  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  bool wake_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace hallmark::revocation
