// Durable issuance transactions per second on SQLite and PostgreSQL, 1 and 16 concurrent callers,
// against a baseline of plain single-row autocommit inserts (same durability) on the same database
// in the same run.
//
//   store_bench [--seconds N] [--devices N] [--pg URL | --no-pg] [--dir DIR] [--verbose]
//
// Without --pg a throwaway PostgreSQL server is started (test/pg_harness.hpp). Targets (exit status
// 1 when one is missed): issuance >= 0.8x the baseline in every row, and >= 5,000 issuances/s on
// SQLite with 16 callers.
//
// Comparable sides: the same database and durability (SQLite: WAL and a synced commit each, the
// baseline with synchronous=FULL; PostgreSQL: synchronous_commit=on), the same number of callers,
// and on PostgreSQL the same number of connections.
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/core/log.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/store/store.hpp"
#include "pg_harness.hpp"

using namespace hallmark;
using namespace hallmark::store;
using SteadyClock = std::chrono::steady_clock;

namespace {

double g_seconds = 3.0;
// PostgreSQL connections on each side (store: writer lanes + reader pool; baseline: its pool).
constexpr int kPgConnections = 16;
// The targets.
constexpr double kMinRatio = 0.8;
constexpr double kMinSqlite16 = 5000;
std::int64_t g_devices = 0;  // end entities prepared per engine; 0 = default

// Runs `op(i)` from `callers` threads for g_seconds (or until `limit` operations); returns ops/s.
double measure(int callers, std::int64_t limit, const std::function<bool(std::int64_t)>& op) {
  std::atomic<std::int64_t> next{0};
  std::atomic<std::int64_t> done{0};
  std::atomic<bool> failed{false};
  const auto deadline = SteadyClock::now() + std::chrono::duration<double>(g_seconds);
  const auto t0 = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&] {
      while (SteadyClock::now() < deadline && !failed) {
        const auto i = next++;
        if (i >= limit) return;
        if (!op(i)) {
          failed = true;
          return;
        }
        ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  if (failed) std::fprintf(stderr, "an operation failed; figures are partial\n");
  return static_cast<double>(done.load()) / elapsed;
}

std::string serial_for(const char* tag, std::int64_t i) {
  return std::string(tag) + to_hex(crypto::sha256(as_bytes(std::to_string(i)))).substr(0, 24);
}

// Devices (mounted) with end entities, inserted with plain SQL so setup is quick.
struct Fixture {
  std::int64_t count = 0;
  std::vector<std::string> users;
};

Fixture make_fixture(Store& store, std::int64_t n, const std::function<void(const std::string&)>& raw) {
  ManifestImport m;
  m.manifest = ManifestRecord{0, "bench", "bench", to_hex(crypto::random_bytes(16)), 0, 0, Seconds{}};
  m.devices.reserve(static_cast<std::size_t>(n));
  Fixture f;
  for (std::int64_t i = 0; i < n; ++i) {
    DeviceRecord d;
    d.vendor_unique_id = "dev-" + std::to_string(i);
    d.bc_der = crypto::random_bytes(64);
    d.bc_sha256 = crypto::sha256_hex(d.bc_der);
    d.ukid = crypto::sha256_hex(as_bytes(d.vendor_unique_id));
    d.bc_issuer = "CN=bench";
    f.users.push_back(*d.ukid);
    m.devices.push_back(std::move(d));
  }
  auto imported = store.import_manifest(m);
  if (!imported) {
    std::fprintf(stderr, "import: %s\n", imported.error().detail.c_str());
    std::exit(1);
  }
  raw("UPDATE devices SET state = 'mounted'");
  raw("INSERT INTO end_entities (username, device_id) SELECT ukid, id FROM devices");
  f.count = n;
  return f;
}

IssuanceRequest issuance(const std::string& user, std::int64_t i, const Bytes& der) {
  IssuanceRequest r;
  r.username = user;
  r.certificate.serial_hex = serial_for("i", i);
  r.certificate.issuer_ca = "idc-ca";
  r.certificate.subject = "CN=" + user.substr(0, 16);
  r.certificate.not_before = Seconds{std::chrono::seconds{1'800'000'000}};
  r.certificate.not_after = kNoExpiry;
  r.certificate.public_key_sha256 = user;
  r.certificate.der = der;
  r.audit.actor = "bench";
  r.audit.time = r.certificate.not_before;
  return r;
}

struct Figures {
  std::string backend;
  int callers;
  double baseline;
  double issuance;
};

// One durable issuance per call, for the next unused end entity of the fixture.
std::function<bool(std::int64_t)> issuance_op_for(Store& store, const Fixture& f, const Bytes& der,
                                                  std::atomic<std::int64_t>& next_user) {
  return [&store, &f, &der, &next_user](std::int64_t) {
    const auto u = next_user++;
    if (u >= f.count) return false;
    auto r = store.record_issuance(issuance(f.users[static_cast<std::size_t>(u)], u, der));
    if (!r) std::fprintf(stderr, "issuance: %s\n", r.error().detail.c_str());
    return r.has_value();
  };
}

void print(const Figures& f) {
  std::printf("%-10s callers=%-2d  baseline_insert=%9.0f/s  issuance=%9.0f/s  ratio=%.2fx\n",
              f.backend.c_str(), f.callers, f.baseline, f.issuance,
              f.baseline > 0 ? f.issuance / f.baseline : 0.0);
  std::fflush(stdout);
}

// ---- SQLite

std::vector<Figures> bench_sqlite(const std::string& dir) {
  const std::string path = dir + "/bench.db";
  std::filesystem::remove(path);
  auto store = std::move(*open_store("sqlite:" + path));
  (void)store->migrate();

  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;",
               nullptr, nullptr, nullptr);
  auto raw = [&](const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::fprintf(stderr, "sqlite: %s\n", err);
      std::exit(1);
    }
  };
  raw("CREATE TABLE bench_baseline (id INTEGER PRIMARY KEY, serial TEXT NOT NULL UNIQUE, der BLOB NOT NULL)");
  const Fixture f = make_fixture(*store, g_devices ? g_devices : 200'000, raw);
  const Bytes der = crypto::random_bytes(400);

  // Baseline: one connection (SQLite has one writer; sharing it under a mutex is the fastest plain
  // way, faster than 16 connections sleeping in the busy handler), one autocommit insert each.
  std::mutex mu;
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO bench_baseline (serial, der) VALUES (?, ?)", -1, &insert, nullptr);
  auto baseline_op = [&](std::int64_t i) {
    const std::string serial = serial_for("b", i);
    std::lock_guard lock(mu);
    sqlite3_bind_text(insert, 1, serial.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(insert, 2, der.data(), static_cast<int>(der.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(insert);
    sqlite3_reset(insert);
    return rc == SQLITE_DONE;
  };
  std::atomic<std::int64_t> next_user{0};
  const auto issuance_op = issuance_op_for(*store, f, der, next_user);

  std::vector<Figures> out;
  std::int64_t b_base = 0;
  for (int callers : {1, 16}) {
    Figures fig{"sqlite", callers, 0, 0};
    fig.baseline = measure(callers, 1'000'000'000, [&](std::int64_t i) { return baseline_op(b_base + i); });
    b_base += 10'000'000;
    fig.issuance = measure(callers, f.count, issuance_op);
    print(fig);
    out.push_back(fig);
  }
  sqlite3_finalize(insert);
  sqlite3_close(db);
  return out;
}

// ---- PostgreSQL

std::vector<Figures> bench_postgres(const std::string& url) {
  // Both sides get the same connection budget: the store's writer lanes plus its reader pool, and
  // the baseline's pool (one connection per caller, its best case).
  const StoreOptions options{.pool_size = kPgConnections - 4, .max_batch = 256, .writers = 4};
  auto opened = open_store(url, options);
  if (!opened) {
    std::fprintf(stderr, "postgres: %s\n", opened.error().detail.c_str());
    return {};
  }
  auto store = std::move(*opened);
  (void)store->migrate();
  PGconn* admin = PQconnectdb(url.c_str());
  auto raw = [&](const std::string& sql) {
    PGresult* r = PQexec(admin, sql.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
      std::fprintf(stderr, "postgres: %s\n", PQresultErrorMessage(r));
      std::exit(1);
    }
    PQclear(r);
  };
  raw("CREATE TABLE bench_baseline (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, serial TEXT NOT "
      "NULL "
      "UNIQUE, der BYTEA NOT NULL)");
  const Fixture f = make_fixture(*store, g_devices ? g_devices : 100'000, raw);
  raw("VACUUM ANALYZE");
  const Bytes der = crypto::random_bytes(400);

  // Baseline: each caller has its own connection of a pool of the same size as the store's and does
  // autocommit single-row inserts (synchronous_commit=on, as the store's commits).
  std::vector<PGconn*> conns;
  for (int i = 0; i < kPgConnections; ++i) {
    PGconn* c = PQconnectdb(url.c_str());
    PGresult* r = PQprepare(c, "ins", "INSERT INTO bench_baseline (serial, der) VALUES ($1, $2)", 2, nullptr);
    PQclear(r);
    conns.push_back(c);
  }
  std::atomic<int> conn_index{0};
  thread_local PGconn* my_conn = nullptr;
  thread_local int my_generation = -1;
  std::atomic<int> generation{0};
  auto baseline_op = [&](std::int64_t i) {
    if (my_generation != generation.load()) {
      my_conn = conns[static_cast<std::size_t>(conn_index++ % kPgConnections)];
      my_generation = generation.load();
    }
    const std::string serial = serial_for("b", i);
    const char* values[] = {serial.c_str(), reinterpret_cast<const char*>(der.data())};
    const int lengths[] = {0, static_cast<int>(der.size())};
    const int formats[] = {0, 1};
    PGresult* r = PQexecPrepared(my_conn, "ins", 2, values, lengths, formats, 0);
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) std::fprintf(stderr, "baseline: %s\n", PQresultErrorMessage(r));
    PQclear(r);
    return ok;
  };
  std::atomic<std::int64_t> next_user{0};
  const auto issuance_op = issuance_op_for(*store, f, der, next_user);

  std::vector<Figures> out;
  std::int64_t b_base = 0;
  for (int callers : {1, 16}) {
    Figures fig{"postgresql", callers, 0, 0};
    ++generation;
    conn_index = 0;
    fig.baseline = measure(callers, 1'000'000'000, [&](std::int64_t i) { return baseline_op(b_base + i); });
    b_base += 10'000'000;
    fig.issuance = measure(callers, f.count, issuance_op);
    print(fig);
    out.push_back(fig);
  }
  for (auto* c : conns) PQfinish(c);
  PQfinish(admin);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string pg_url;
  bool no_pg = false;
  bool verbose = false;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      g_seconds = std::stod(argv[++i]);
    } else if (a == "--pg" && i + 1 < argc) {
      pg_url = argv[++i];
    } else if (a == "--devices" && i + 1 < argc) {
      g_devices = std::stoll(argv[++i]);
    } else if (a == "--verbose") {
      verbose = true;
    } else if (a == "--no-pg") {
      no_pg = true;
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: store_bench [--seconds N] [--devices N] [--pg URL | --no-pg] [--dir DIR]\n");
      return 2;
    }
  }
  log::set_level(verbose ? log::Level::debug : log::Level::warn);
  std::string tmp;
  if (dir.empty()) {
    char tmpl[] = "/tmp/hallmark-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    dir = tmp = tmpl;
  }
  std::printf("store_bench: %.1f s per figure, %u hardware threads\n", g_seconds,
              std::thread::hardware_concurrency());
  std::vector<Figures> figures = bench_sqlite(dir);

  if (!no_pg) {
    std::unique_ptr<hallmark::test::PgServer> server;
    if (pg_url.empty()) {
      std::string error;
      server = hallmark::test::PgServer::start(&error);
      if (!server) {
        std::fprintf(stderr, "postgres: %s\n", error.c_str());
        return 1;
      }
      pg_url = server->url();
    }
    auto pg = bench_postgres(pg_url);
    if (pg.empty()) {
      std::printf("target: postgresql figures missing: MISSED\n");
      figures.push_back(Figures{"postgresql", 16, 1, 0});
    }
    figures.insert(figures.end(), pg.begin(), pg.end());
  } else {
    std::printf("postgresql: skipped (--no-pg); its targets are not checked\n");
  }
  if (!tmp.empty()) std::filesystem::remove_all(tmp);

  bool met = true;
  for (const auto& f : figures) {
    const double ratio = f.baseline > 0 ? f.issuance / f.baseline : 0.0;
    const bool ok = ratio >= kMinRatio;
    met = met && ok;
    std::printf("target: %s callers=%d issuance >= %.1fx baseline: %.2fx %s\n", f.backend.c_str(), f.callers,
                kMinRatio, ratio, ok ? "met" : "MISSED");
    if (f.backend == "sqlite" && f.callers == 16) {
      const bool fast = f.issuance >= kMinSqlite16;
      met = met && fast;
      std::printf("target: sqlite callers=16 issuance >= %.0f/s: %.0f/s %s\n", kMinSqlite16, f.issuance,
                  fast ? "met" : "MISSED");
    }
  }
  return met ? 0 : 1;
}
