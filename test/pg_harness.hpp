#pragma once
// A throwaway PostgreSQL server for tests and benchmarks: initdb into a temporary directory, start it
// with pg_ctl on a free 127.0.0.1 port (trust authentication), stop it and remove everything in the
// destructor. When run as root the server runs as user `postgres` (PostgreSQL refuses root).
// Header-only so that tests and bench/store can share it.
#include <libpq-fe.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "process.hpp"

namespace hallmark::test {

class PgServer {
 public:
  // nullptr and *error set when the server cannot be started. With `template_dir` (e.g. the build
  // directory) an initialised cluster is kept there and copied, instead of running initdb each time.
  static std::unique_ptr<PgServer> start(std::string* error, std::string template_dir = {}) {
    std::unique_ptr<PgServer> s(new PgServer());
    s->template_dir_ = std::move(template_dir);
    if (!s->init(error)) return nullptr;
    if (!s->start_server()) {
      *error = "pg_ctl start failed; log: " + s->tail_log();
      return nullptr;
    }
    return s;
  }

  ~PgServer() {
    if (running_ && !stop_server())
      (void)run_as_owner(bin("pg_ctl") + " -D " + data_ + " -m immediate -w stop >>" + dir_ +
                         "/ctl.log 2>&1");
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  [[nodiscard]] std::string url(const std::string& db = "postgres") const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
  }
  [[nodiscard]] int port() const { return port_; }

  // pg_ctl stop -m fast: open sessions are terminated.
  bool stop_server() {
    const bool ok =
        run_as_owner(bin("pg_ctl") + " -D " + data_ + " -m fast -w -t 30 stop >>" + dir_ + "/ctl.log 2>&1");
    if (ok) running_ = false;
    return ok;
  }

  bool start_server() {
    const std::string opts = "-p " + std::to_string(port_) + " -k " + dir_ +
                             " -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
                             " -c synchronous_commit=on";
    const bool ok = run_as_owner(bin("pg_ctl") + " -D " + data_ + " -l " + dir_ +
                                 "/server.log -w -t 60 -o '" + opts + "' start >>" + dir_ + "/ctl.log 2>&1");
    if (ok) running_ = true;
    return ok;
  }

  // Runs SQL (several statements allowed) on database `db`; empty string on success.
  [[nodiscard]] std::string exec(const std::string& sql, const std::string& db = "postgres") const {
    PGconn* c = PQconnectdb(url(db).c_str());
    std::string err;
    if (PQstatus(c) != CONNECTION_OK) {
      err = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      const auto st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) err = PQresultErrorMessage(r);
      PQclear(r);
    }
    PQfinish(c);
    return err;
  }

  // Empties the public schema of database `db` (fast; the cases of one program share the server).
  [[nodiscard]] std::string reset_schema(const std::string& db = "postgres") const {
    return exec("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public", db);
  }

  // A fresh, empty database named `name` (dropped first when it exists).
  [[nodiscard]] std::string fresh_database(const std::string& name) const {
    auto err = exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    if (!err.empty()) return err;
    return exec("CREATE DATABASE " + name);
  }

 private:
  PgServer() = default;

  [[nodiscard]] std::string bin(const std::string& name) const { return bindir_ + "/" + name; }

  static std::string find_bindir() {
    namespace fs = std::filesystem;
    if (const char* path = std::getenv("PATH")) {
      std::string p = path;
      for (std::size_t start = 0; start <= p.size();) {
        const auto end = std::min(p.find(':', start), p.size());
        const fs::path dir = p.substr(start, end - start);
        std::error_code ec;
        if (!dir.empty() && fs::exists(dir / "initdb", ec) && fs::exists(dir / "pg_ctl", ec))
          return dir.string();
        start = end + 1;
      }
    }
    // Debian's layout: /usr/lib/postgresql/<major>/bin; take the newest.
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
      if (fs::exists(e.path() / "bin" / "initdb", ec)) found.push_back((e.path() / "bin").string());
    }
    std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
      return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    return found.empty() ? std::string() : found.back();
  }

  // Runs a shell command in the server directory, as `postgres` when we are root.
  [[nodiscard]] bool run_as_owner(const std::string& command) const {
    std::string full = "cd " + dir_ + " && ";
    full += as_postgres_ ? "runuser -u postgres -- sh -c \"" + command + "\"" : command;
    return std::system(full.c_str()) == 0;
  }

  bool init(std::string* error) {
    bindir_ = find_bindir();
    if (bindir_.empty()) {
      *error = "PostgreSQL server binaries (initdb, pg_ctl) not found";
      return false;
    }
    char tmpl[] = "/tmp/hallmark-pg-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      *error = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
    data_ = dir_ + "/data";
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (!pw) {
        *error = "running as root and there is no user postgres";
        return false;
      }
      as_postgres_ = true;
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        *error = "chown of " + dir_ + " failed";
        return false;
      }
    }
    port_ = hallmark::testing::free_port();
    if (port_ == 0) {
      *error = "no free port";
      return false;
    }
    if (!template_dir_.empty()) {
      // initdb once per build tree, copy per server: CTest runs every case in a process of its own.
      const std::string tmpl = template_dir_ + "/pg-template";
      if (!std::filesystem::exists(tmpl + "/PG_VERSION")) {
        const std::string staging = tmpl + ".tmp" + std::to_string(::getpid());
        if (!run_as_owner(bin("initdb") + " -D " + data_ +
                          " -A trust -U postgres -E UTF8 --locale=C --no-sync >" + dir_ +
                          "/initdb.log 2>&1")) {
          *error = "initdb failed; see " + dir_ + "/initdb.log";
          return false;
        }
        std::error_code ec;
        std::filesystem::remove_all(staging, ec);
        if (std::system(
                ("cp -a " + data_ + " " + staging + " && mv -T " + staging + " " + tmpl + " 2>/dev/null")
                    .c_str()) != 0)
          std::filesystem::remove_all(staging, ec);  // another process won the race
        return true;
      }
      if (std::system(("cp -a " + tmpl + " " + data_).c_str()) != 0) {
        *error = "copying the PostgreSQL template cluster failed";
        return false;
      }
      return !as_postgres_ || std::system(("chown -R postgres:postgres " + data_).c_str()) == 0;
    }
    if (!run_as_owner(bin("initdb") + " -D " + data_ +
                      " -A trust -U postgres -E UTF8 --locale=C --no-sync >" + dir_ + "/initdb.log 2>&1")) {
      *error = "initdb failed; see " + dir_ + "/initdb.log";
      return false;
    }
    return true;
  }

  [[nodiscard]] std::string tail_log() const {
    std::string out;
    if (FILE* f = std::fopen((dir_ + "/server.log").c_str(), "r")) {
      char buf[4096];
      std::size_t n = std::fread(buf, 1, sizeof buf, f);
      out.assign(buf, n);
      std::fclose(f);
    }
    return out;
  }

  std::string bindir_;
  std::string template_dir_;
  std::string dir_;
  std::string data_;
  int port_ = 0;
  bool as_postgres_ = false;
  bool running_ = false;
};

}  // namespace hallmark::test
