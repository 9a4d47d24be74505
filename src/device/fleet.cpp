#include "hallmark/device/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <thread>

#include "connection.hpp"
#include "flow.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/device/agent.hpp"

namespace hallmark::device {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

struct Device {
  ChipImage chip;
  std::string ukid;
  Identity bc;
  std::shared_ptr<const crypto::Signer> key;       // for the IDC
  std::shared_ptr<const crypto::Signer> next_key;  // for the re-enrollment, when it re-enrolls
  ServerUrl url;
  // Results.
  bool enrolled = false;
  bool reenrolled = false;
  std::string failure;
  double enroll_ms = 0;
  double reenroll_ms = 0;
  int retries = 0;
  Clock::time_point began{};
  Clock::time_point ended{};
};

struct Shared {
  const FleetOptions& options;
  std::shared_ptr<detail::ClientTls> tls;
  std::vector<detail::tcp::endpoint> endpoints;
  std::vector<x509::Certificate> cacerts;
  std::vector<x509::Certificate> intermediates;
  x509::TrustStore trust;
  std::vector<Device>& devices;
  std::atomic<std::size_t> next{0};
  ProgressBar& progress;
};

std::string reason_of(const Error& e) {
  switch (e.code) {
    case Errc::unavailable: return "network";
    case Errc::unauthenticated: return "server-untrusted";
    case Errc::forbidden: return "answer-refused";
    default: return "client-error";
  }
}

// One operation on its own connection, with retries for network failures and 202/503.
asio::awaitable<Result<std::vector<x509::Certificate>>> exchange(Shared& s, Device& d,
                                                                 const Identity& identity, bool reenroll,
                                                                 const crypto::Signer& key,
                                                                 const x509::Certificate* idc,
                                                                 std::string& reason) {
  const auto& o = s.options;
  auto executor = co_await asio::this_coro::executor;
  std::chrono::milliseconds backoff{200};
  Error last{Errc::internal, "no attempt"};
  for (int attempt = 1; attempt <= std::max(1, o.max_attempts); ++attempt) {
    if (attempt > 1) {
      ++d.retries;
      asio::steady_timer timer(executor, backoff);
      co_await timer.async_wait(asio::use_awaitable);
      backoff *= 2;
    }
    detail::Connection c(executor, *s.tls, o.timeout);
    if (auto st = co_await c.connect(s.endpoints, d.url, &identity); !st) {
      last = st.error();
      reason = reason_of(last);
      if (last.code == Errc::unavailable) continue;
      co_return std::unexpected(last);
    }
    CsrAttrs attrs;
    if (!reenroll && o.csrattrs) {
      auto r = co_await detail::est_get(c, d.url, "csrattrs");
      if (!r) {
        last = r.error();
        reason = "network";
        c.close();
        continue;
      }
      if (r->status == 200) {
        auto der = crypto::base64_decode(r->body);
        auto parsed = der ? parse_csr_attrs(*der) : Result<CsrAttrs>(std::unexpected(der.error()));
        if (!parsed) {
          reason = "bad-csrattrs";
          c.close();
          co_return std::unexpected(parsed.error());
        }
        attrs = std::move(*parsed);
      }
    }
    auto csr =
        reenroll ? detail::make_reenroll_csr(*idc, key, std::nullopt)
                 : detail::make_enroll_csr(
                       attrs,
                       detail::CsrPlan{d.ukid, d.chip.ukid_secret ? &*d.chip.ukid_secret : nullptr, {}}, key);
    if (!csr) {
      reason = "client-error";
      c.close();
      co_return std::unexpected(csr.error());
    }
    const auto operation = reenroll ? "simplereenroll" : "simpleenroll";
    auto reply = co_await detail::est_post_csr(c, d.url, operation, *csr, nullptr);
    c.close();
    if (!reply) {
      last = reply.error();
      reason = "network";
      continue;
    }
    if (!reply->ok()) {
      last = reply->to_error(operation);
      reason = reply->problem_code.empty() ? fmt::format("http-{}", reply->status) : reply->problem_code;
      if (reply->status == 202 || reply->status == 503) {
        if (reply->retry_after)
          backoff = std::chrono::duration_cast<std::chrono::milliseconds>(*reply->retry_after);
        continue;
      }
      co_return std::unexpected(last);
    }
    auto answer = decode_certs_only(*reply, operation);
    if (!answer) {
      reason = "bad-answer";
      co_return std::unexpected(answer.error());
    }
    const auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    if (auto st = detail::check_issued(*answer, key.public_key(), s.cacerts, s.trust, now); !st) {
      reason = "answer-refused";
      co_return std::unexpected(st.error());
    }
    reason.clear();
    co_return answer;
  }
  co_return std::unexpected(last);
}

asio::awaitable<void> play_flow(Shared& s, Device& d, bool reenroll) {
  const auto t0 = Clock::now();
  std::string reason;
  auto answer = co_await exchange(s, d, d.bc, false, *d.key, nullptr, reason);
  if (!answer) {
    d.failure = reason.empty() ? "client-error" : reason;
    co_return;
  }
  d.enrolled = true;
  d.enroll_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!reenroll) co_return;
  x509::Certificate idc;
  for (auto& c : *answer) {
    if (!c.is_ca()) idc = c;
  }
  Identity with_idc{d.key, {idc}};
  for (const auto& i : s.intermediates) with_idc.chain.push_back(i);
  const auto t1 = Clock::now();
  auto again = co_await exchange(s, d, with_idc, true, *d.next_key, &idc, reason);
  if (!again) {
    d.failure = reason.empty() ? "client-error" : reason;
    co_return;
  }
  d.reenrolled = true;
  d.reenroll_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
}

asio::awaitable<void> play(Shared& s, Device& d, bool reenroll) {
  d.began = Clock::now();
  co_await play_flow(s, d, reenroll);
  d.ended = Clock::now();
}

bool reenrolls(std::size_t i, double fraction) {
  return std::floor(static_cast<double>(i + 1) * fraction) > std::floor(static_cast<double>(i) * fraction);
}

asio::awaitable<void> worker(Shared& s) {
  for (;;) {
    const std::size_t i = s.next.fetch_add(1);
    if (i >= s.devices.size()) co_return;
    co_await play(s, s.devices[i], reenrolls(i, s.options.reenroll_fraction));
    s.progress.add();
  }
}

// The seed's option a chip mode plays: BC enrollment is Option 2, BC + UKID secret is Option 3.
std::string option_of(const std::string& mode) {
  if (mode == "bc") return "option 2";
  if (mode == "bc-secret") return "option 3";
  return "option ?";
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

Result<std::vector<std::string>> chip_files(const std::string& reel) {
  fs::path dir = reel;
  std::error_code ec;
  if (fs::is_directory(dir / "chips", ec)) dir /= "chips";
  if (!fs::is_directory(dir, ec))
    return fail(Errc::not_found, fmt::format("reel directory {} does not exist", reel));
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".json") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

Result<FleetReport> run_fleet(const FleetOptions& o) {
  if (o.concurrency == 0) return fail(Errc::invalid_input, "--concurrency must be at least 1");
  if (o.threads < 1 || o.threads > 2) return fail(Errc::invalid_input, "--threads must be 1 or 2");
  if (o.reenroll_fraction < 0 || o.reenroll_fraction > 1) {
    return fail(Errc::invalid_input, "--reenroll-fraction must be between 0 and 1");
  }
  const auto files = HM_TRY(chip_files(o.reel));
  std::vector<Device> devices;
  const std::string alias = o.alias.empty() ? o.server.alias : o.alias;
  const std::string secret_alias = o.secret_alias.empty() ? alias : o.secret_alias;
  for (const auto& f : files) {
    if (o.count != 0 && devices.size() == o.count) break;
    auto chip = HM_TRY(ChipImage::load(f));
    if (chip.mode == "idc") continue;  // Option 1: born with its IDC, nothing to enroll
    Device d;
    d.ukid = ukid_of(chip.chain.front());
    d.bc =
        Identity{std::make_shared<const crypto::FileSigner>(chip.key, "chip:" + chip.unique_id), chip.chain};
    d.url = o.server.with_alias(chip.mode == "bc-secret" ? secret_alias : alias);
    d.chip = std::move(chip);
    devices.push_back(std::move(d));
  }
  if (devices.empty())
    return fail(Errc::not_found, fmt::format("no bc or bc-secret chip images in {}", o.reel));
  if (o.count != 0 && devices.size() < o.count) {
    return fail(Errc::invalid_input, fmt::format("--count {} but the reel holds {} bc/bc-secret chip images",
                                                 o.count, devices.size()));
  }
  for (std::size_t i = 0; i < devices.size(); ++i) {
    auto k = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
    devices[i].key = std::make_shared<const crypto::FileSigner>(k, "memory");
    if (reenrolls(i, o.reenroll_fraction)) {
      auto k2 = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
      devices[i].next_key = std::make_shared<const crypto::FileSigner>(k2, "memory");
    }
  }

  // cacerts once per run, checked against the trust anchor like a device does.
  auto session =
      HM_TRY(EstSession::open(ClientOptions{o.server.with_alias(alias), o.trust, o.timeout, false}, nullptr));
  auto cacerts = HM_TRY(session->cacerts());
  session.reset();
  const auto trust = detail::make_trust_store(o.trust);
  HM_TRY_VOID(detail::check_cacerts(
      cacerts, trust, std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now())));

  asio::io_context io(o.threads);
  detail::tcp::resolver resolver(io);
  boost::system::error_code ec;
  const auto results = resolver.resolve(o.server.host, o.server.port, ec);
  if (ec) return fail(Errc::unavailable, fmt::format("cannot resolve {}: {}", o.server.host, ec.message()));
  std::vector<detail::tcp::endpoint> endpoints;
  for (const auto& r : results) endpoints.push_back(r.endpoint());

  ProgressBar progress("fleet", devices.size(), o.progress);
  Shared shared{o,
                HM_TRY(detail::ClientTls::make(o.trust, false)),
                endpoints,
                cacerts,
                detail::intermediates_of(cacerts),
                trust,
                devices,
                {},
                progress};
  const auto start = Clock::now();
  const std::size_t workers = std::min(o.concurrency, devices.size());
  for (std::size_t i = 0; i < workers; ++i) asio::co_spawn(io, worker(shared), asio::detached);
  std::vector<std::thread> extra;
  for (int t = 1; t < o.threads; ++t) extra.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : extra) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  progress.finish();

  FleetReport r;
  r.devices = devices.size();
  r.seconds = seconds;
  std::vector<double> enroll_ms;
  std::vector<double> reenroll_ms;
  std::map<std::string, std::pair<Clock::time_point, Clock::time_point>> spans;  // per mode
  for (const auto& d : devices) {
    auto& m = r.by_mode[d.chip.mode];
    ++m.devices;
    auto [span, first] = spans.try_emplace(d.chip.mode, d.began, d.ended);
    if (!first) {
      span->second.first = std::min(span->second.first, d.began);
      span->second.second = std::max(span->second.second, d.ended);
    }
    if (d.reenrolled) ++m.reenrolled;
    r.retries += static_cast<std::size_t>(d.retries);
    if (d.enrolled) {
      ++r.enrolled;
      ++m.enrolled;
      enroll_ms.push_back(d.enroll_ms);
    }
    if (d.reenrolled) {
      ++r.reenrolled;
      reenroll_ms.push_back(d.reenroll_ms);
    }
    if (!d.failure.empty()) {
      ++r.failed;
      ++r.failures[d.failure];
      ++m.failures[d.failure];
    }
  }
  r.enrollments_per_second = seconds > 0 ? static_cast<double>(r.enrolled + r.reenrolled) / seconds : 0;
  for (auto& [mode, m] : r.by_mode) {
    const auto& [began, ended] = spans.at(mode);
    m.seconds = std::chrono::duration<double>(ended - began).count();
    m.enrollments_per_second = m.seconds > 0 ? static_cast<double>(m.enrolled + m.reenrolled) / m.seconds : 0;
  }
  r.p50_ms = percentile(enroll_ms, 0.50);
  r.p90_ms = percentile(enroll_ms, 0.90);
  r.p99_ms = percentile(enroll_ms, 0.99);
  r.reenroll_p50_ms = percentile(reenroll_ms, 0.50);
  r.reenroll_p90_ms = percentile(reenroll_ms, 0.90);
  r.reenroll_p99_ms = percentile(reenroll_ms, 0.99);
  return r;
}

std::string FleetReport::to_text() const {
  std::string out = fmt::format(
      "devices {}  enrolled {}  re-enrolled {}  failed {}  retries {}  in {:.2f} s\n"
      "enrollments/s {:.1f}\n"
      "enroll latency ms    p50 {:.1f}  p90 {:.1f}  p99 {:.1f}\n",
      devices, enrolled, reenrolled, failed, retries, seconds, enrollments_per_second, p50_ms, p90_ms,
      p99_ms);
  if (reenrolled > 0) {
    out += fmt::format("reenroll latency ms  p50 {:.1f}  p90 {:.1f}  p99 {:.1f}\n", reenroll_p50_ms,
                       reenroll_p90_ms, reenroll_p99_ms);
  }
  constexpr auto row = "{:<21} {:>7} {:>8} {:>11} {:>13}  {}\n";
  out += fmt::format(row, "option (chip mode)", "devices", "enrolled", "re-enrolled", "enrollments/s",
                     "refused by reason");
  for (const auto& [mode, m] : by_mode) {
    std::string reasons;
    for (const auto& [code, n] : m.failures)
      reasons += fmt::format("{}{}={}", reasons.empty() ? "" : " ", code, n);
    out +=
        fmt::format(row, fmt::format("{} ({})", option_of(mode), mode), m.devices, m.enrolled, m.reenrolled,
                    fmt::format("{:.1f}", m.enrollments_per_second), reasons.empty() ? "-" : reasons);
  }
  return out;
}

}  // namespace hallmark::device
