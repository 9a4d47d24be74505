#pragma once
// nginx as a child process of a test, in front of `hallmark serve`: a prefix directory of its own (pid
// file, logs, temporary paths) and an nginx.conf whose http {} block includes the server block that
// `hallmark proxy nginx-config` wrote. It runs in the foreground ("daemon off;") so that the test owns
// the master process, and stops with SIGTERM: the master then stops its workers, which a SIGKILL
// would leave running. No GoogleTest here, as test/serve_process.hpp.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "serve_process.hpp"

namespace hallmark::testing {

// The nginx binary; empty when nginx is not installed (scripts/install-deps installs it).
inline std::string nginx_binary() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"}) {
    if (std::filesystem::exists(p)) return p;
  }
  return {};
}

// Whether something accepts TCP connections on 127.0.0.1:`port`.
inline bool accepts_connections(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

class NginxProcess {
 public:
  NginxProcess() = default;
  NginxProcess(const NginxProcess&) = delete;
  NginxProcess& operator=(const NginxProcess&) = delete;
  ~NginxProcess() { stop(); }

  // Starts nginx with its files under `prefix` and `server_conf` (server blocks for the http {}
  // context) included, listening on 127.0.0.1:`port` as `server_conf` says. Waits until the port
  // accepts connections, then until `ready` (when given) returns true, up to 10 s each. Empty on
  // success, else what went wrong, with nginx's logs.
  [[nodiscard]] std::string start(const std::string& prefix, const std::string& server_conf, int port,
                                  const std::function<bool()>& ready = {}) {
    prefix_ = prefix;
    std::filesystem::create_directories(prefix + "/logs");
    std::ofstream(prefix + "/nginx.conf") << "pid " << prefix << "/nginx.pid;\n"
                                          << "error_log " << error_log_path() << " info;\n"
                                          << "worker_processes 1;\n"
                                          << "events { worker_connections 128; }\n"
                                          << "http {\n"
                                          << "  access_log " << access_log_path() << ";\n"
                                          << "  client_body_temp_path " << prefix << "/body;\n"
                                          << "  proxy_temp_path " << prefix << "/proxy;\n"
                                          << "  fastcgi_temp_path " << prefix << "/fastcgi;\n"
                                          << "  uwsgi_temp_path " << prefix << "/uwsgi;\n"
                                          << "  scgi_temp_path " << prefix << "/scgi;\n"
                                          << "  include " << server_conf << ";\n"
                                          << "}\n";
    const auto binary = nginx_binary();
    if (binary.empty()) return "nginx is not installed";
    if (!child_.start(
            binary, {"-p", prefix, "-e", error_log_path(), "-c", prefix + "/nginx.conf", "-g", "daemon off;"},
            prefix + "/nginx.out")) {
      return "fork failed";
    }
    const auto wait_for = [&](const std::function<bool()>& condition) {
      for (int i = 0; i < 100; ++i) {
        if (!child_.running()) return false;
        if (condition()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      return false;
    };
    if (!wait_for([port] { return accepts_connections(port); }))
      return (child_.running() ? "nginx does not listen:\n" : "nginx exited:\n") + logs();
    if (ready && !wait_for(ready))
      return (child_.running() ? "nginx is not ready:\n" : "nginx exited:\n") + logs();
    return {};
  }

  // SIGHUP: the master rereads its configuration and replaces its workers.
  void reload() {
    if (child_.pid() > 0) ::kill(child_.pid(), SIGHUP);
  }
  // SIGTERM, then the master's exit status.
  int stop() { return child_.stop(); }
  [[nodiscard]] bool running() { return child_.running(); }
  [[nodiscard]] pid_t pid() const { return child_.pid(); }

  [[nodiscard]] std::string error_log_path() const { return prefix_ + "/logs/error.log"; }
  [[nodiscard]] std::string access_log_path() const { return prefix_ + "/logs/access.log"; }
  [[nodiscard]] std::string error_log() const { return slurp(error_log_path()); }
  [[nodiscard]] std::string access_log() const { return slurp(access_log_path()); }
  // What nginx printed, then its error log.
  [[nodiscard]] std::string logs() const { return child_.log() + error_log(); }

 private:
  Child child_;
  std::string prefix_;
};

}  // namespace hallmark::testing
