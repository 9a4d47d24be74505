// Child process of the crash test: records issuances in a loop from several threads and writes each
// serial to stdout after its transaction committed. The parent SIGKILLs it at a random moment.
//   store_crash_writer DB_PATH THREADS
#include <unistd.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/store/store.hpp"

using namespace hallmark;
using namespace hallmark::store;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: store_crash_writer DB_PATH THREADS\n");
    return 2;
  }
  auto opened = open_store(std::string("sqlite:") + argv[1]);
  if (!opened) {
    std::fprintf(stderr, "open: %s\n", opened.error().detail.c_str());
    return 1;
  }
  auto& store = **opened;
  if (auto m = store.migrate(); !m) {
    std::fprintf(stderr, "migrate: %s\n", m.error().detail.c_str());
    return 1;
  }
  const int threads = std::stoi(argv[2]);
  const std::string run = to_hex(crypto::random_bytes(4));
  std::mutex out_mu;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (long i = 0;; ++i) {
        const std::string user = "crash-" + run + "-" + std::to_string(t) + "-" + std::to_string(i);
        AuditEvent ev;
        ev.time = Seconds{std::chrono::seconds{1'800'000'000 + i}};
        ev.actor = "crash-writer";
        EndEntityRecord ee;
        ee.username = user;
        if (!store.add_end_entity(ee, ev)) std::_Exit(3);
        IssuanceRequest req;
        req.username = user;
        req.certificate.serial_hex = to_hex(crypto::random_bytes(16));
        req.certificate.issuer_ca = "idc-ca";
        req.certificate.subject = "CN=" + user;
        req.certificate.not_before = ev.time;
        req.certificate.not_after = kNoExpiry;
        req.certificate.public_key_sha256 = crypto::sha256_hex(to_bytes(user));
        req.certificate.der = crypto::random_bytes(300);
        req.audit = ev;
        auto r = store.record_issuance(req);
        if (!r) std::_Exit(4);
        // Reported only after the commit: everything printed must survive the kill.
        const std::string line = r->serial_hex + "\n";
        std::lock_guard lock(out_mu);
        if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::_Exit(5);
      }
    });
  }
  for (auto& w : workers) w.join();
}
