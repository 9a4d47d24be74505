// bench_vendor: chips per second of `hallmark vendor provision` (mode bc, no images), against a bare
// loop of the same cryptography in the same run.
//
//   hallmark  vendor::provision: per chip a P-256 key, a BC from the vendor-held BC sub-CA through
//             ca::Issuer, a signed JWS manifest entry, one writer streaming the reel file; recorded
//             in the vendor database at the end
//   baseline  per chip crypto::PrivateKey::generate(P-256) and two ECDSA P-256 signatures (the
//             certificate's and the entry's) with pre-loaded signers, on as many threads
//
// Usage: bench_vendor [chips (20000)] [threads (0: one per core)]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/vendor/vendor.hpp"
#include "hallmark/x509/csr.hpp"

namespace {

using namespace hallmark;
namespace fs = std::filesystem;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_vendor: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
T must(Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().detail);
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

// A vendor home with a BC sub-CA signed by an in-memory OEM root (the OEM side of BYORoT).
void make_station(const fs::path& home, const Clock& clock) {
  vendor::InitOptions init;
  init.home = home;
  must(vendor::init(init, clock), "vendor init");
  const auto req = must(vendor::request_subca({home, "bc", "Bench OEM", {}}), "request-subca");
  ca::DefaultProfileOptions profile_options;
  profile_options.organization = "Bench OEM";
  const auto profiles = ca::default_profiles(profile_options);
  const ca::Profile* root_profile = nullptr;
  const ca::Profile* sub_profile = nullptr;
  for (const auto& p : profiles) {
    if (p.name == "root") root_profile = &p;
    if (p.name == "sub-ca-bc") sub_profile = &p;
  }
  auto root_signer = std::make_shared<crypto::FileSigner>(
      must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "root key"), "memory");
  const auto root = must(ca::issue_self_signed(*root_signer, {}, *root_profile, clock), "root");
  const auto csr_text = must(read_text_file(req.csr.string()), "read CSR");
  const auto csr = must(x509::Csr::parse_pem(csr_text), "parse CSR");
  const ca::Issuer issuer(root, root_signer, clock);
  const auto sub = must(
      issuer.issue({csr, {{"cn", "Bench BC CA"}}, std::nullopt, std::nullopt}, *sub_profile), "sign sub-CA");
  const fs::path chain = home / "bc-chain.pem";
  must(write_file_atomic(chain.string(), as_bytes(sub.to_pem() + root.to_pem())), "write chain");
  must(vendor::install_subca({home, "bc", chain}, clock), "install-subca");
}

double baseline(std::uint64_t chips, unsigned threads) {
  const auto ca_key = must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "key");
  const auto signer_key = must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "key");
  const crypto::FileSigner ca(ca_key, "memory");
  const crypto::FileSigner signer(signer_key, "memory");
  const std::string tbs(420, 'c');     // about a BC's tbsCertificate
  const std::string entry(1800, 'e');  // about an entry's signing input
  std::atomic<std::uint64_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::jthread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      while (next.fetch_add(1) < chips) {
        const auto key = must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "keygen");
        (void)must(ca.sign(as_bytes(tbs), crypto::DigestAlgorithm::sha256), "sign");
        (void)must(signer.sign(as_bytes(entry), crypto::DigestAlgorithm::sha256), "sign");
      }
    });
  }
  workers.clear();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t chips = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 20000;
  unsigned threads = argc > 2 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)) : 0;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const SystemClock clock;
  const fs::path dir = fs::temp_directory_path() / ("bench-vendor-" + std::to_string(std::random_device{}()));
  make_station(dir / "home", clock);

  vendor::ProvisionOptions o;
  o.home = dir / "home";
  o.mode = vendor::Mode::bc;
  o.count = chips;
  o.part_number = "ATECC608B-TFLXTLS";
  o.reel = "bench";
  o.out_dir = dir / "out";
  o.images = false;
  o.threads = threads;
  o.progress = ProgressBar::Mode::never;
  const auto summary = must(vendor::provision(o, clock), "provision");
  const double base_seconds = baseline(chips, threads);
  std::error_code ec;
  fs::remove_all(dir, ec);

  const double base_rate = static_cast<double>(chips) / base_seconds;
  std::printf("chips %llu, threads %u\n", static_cast<unsigned long long>(chips), threads);
  std::printf("hallmark  vendor provision --mode bc (no images)  %8.0f chips/s  (%.2f s)\n",
              summary.chips_per_second, summary.elapsed_seconds);
  std::printf("baseline  keygen + 2 x ECDSA sign                 %8.0f chips/s  (%.2f s)\n", base_rate,
              base_seconds);
  std::printf("ratio     baseline / hallmark                     %8.2f\n",
              base_rate / summary.chips_per_second);
  // Issue target: >= 15,000 chips/s for --mode bc --no-images on the 2-core machine.
  const bool met = summary.chips_per_second >= 15000;
  std::printf("target: vendor provision --mode bc --no-images >= 15000 chips/s: %.0f chips/s %s\n",
              summary.chips_per_second, met ? "met" : "MISSED");
  return met ? 0 : 1;
}
