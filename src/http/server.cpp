#include "hallmark/http/server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "hallmark/core/log.hpp"
#include "tls.hpp"

namespace hallmark::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr std::size_t kReadChunk = 4096;
constexpr std::chrono::milliseconds kShutdownTimeout{500};
constexpr std::chrono::milliseconds kLingerTimeout{1000};
constexpr std::size_t kLingerBytes = 4 * 1024 * 1024;

std::string make_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t v = rng();
  std::string id(16, '0');
  for (auto& c : id) {
    c = kHex[v & 0xf];
    v >>= 4;
  }
  return id;
}

// An upstream (trusted proxy) request id is reused when it looks like one.
bool is_sane_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::ranges::all_of(id, [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_' || c == '.';
  });
}

bool has_crlf(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos;
}

std::string field_error(const ServerConfig& c, std::string_view field, std::string_view what) {
  return "[" + c.section + "] " + std::string(field) + ": " + std::string(what);
}

Status validate_static(const ServerConfig& c) {
  error_code ec;
  (void)asio::ip::make_address(c.listen, ec);
  if (ec) return fail(Errc::invalid_input, field_error(c, "listen", "not an IP address: " + c.listen));
  if (c.max_connections == 0)
    return fail(Errc::invalid_input, field_error(c, "max_connections", "must be at least 1"));
  if (c.max_header_bytes < 256 || c.max_header_bytes > std::numeric_limits<std::uint32_t>::max()) {
    return fail(Errc::invalid_input, field_error(c, "max_header_bytes", "must be at least 256"));
  }
  if (c.max_body_bytes == 0)
    return fail(Errc::invalid_input, field_error(c, "max_body_bytes", "must be at least 1"));
  const std::pair<std::string_view, std::chrono::milliseconds> timeouts[] = {
      {"handshake_timeout", c.timeouts.handshake}, {"header_timeout", c.timeouts.header},
      {"body_timeout", c.timeouts.body},           {"idle_timeout", c.timeouts.idle},
      {"write_timeout", c.timeouts.write},         {"drain_timeout", c.timeouts.drain},
  };
  for (const auto& [name, value] : timeouts) {
    if (value.count() <= 0) return fail(Errc::invalid_input, field_error(c, name, "must be positive"));
  }
  if (c.timeouts.drain_delay.count() < 0) {
    return fail(Errc::invalid_input, field_error(c, "drain_delay", "must not be negative"));
  }
  if (!c.tls && !c.trusted_proxies.empty()) {
    return fail(Errc::invalid_input,
                field_error(c, "trusted_proxies", "need tls (proxies are known by their certificate)"));
  }
  if (!c.tls && !c.client_anchors.empty()) {
    return fail(Errc::invalid_input, field_error(c, "client_anchors", "need tls"));
  }
  if (c.trusted_proxies.header.empty() || has_crlf(c.trusted_proxies.header)) {
    return fail(Errc::invalid_input, field_error(c, "trusted_proxies", "header name is empty or invalid"));
  }
  return {};
}

unsigned cores() {
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

Status validate(const ServerConfig& config) {
  HM_TRY_VOID(validate_static(config));
  if (config.tls) HM_TRY_VOID(detail::TlsContext::make(config));
  return {};
}

// ---------------------------------------------------------------------------------------------------

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  virtual ~Connection() = default;
  virtual void start() = 0;
  // Both run on the connection's own executor.
  virtual void drain() = 0;        // closes it now when it is between requests
  virtual void force_close() = 0;  // closes it whatever it is doing
  [[nodiscard]] virtual asio::any_io_executor executor() = 0;
};

struct Worker {
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> timer;  // accept retry; on worker 0 also the drain delay
  std::thread thread;
};

struct Server::State {
  explicit State(ServerConfig c, Handler h)
      : config(std::move(c)),
        handler(std::move(h)),
        handler_pool(config.handler_threads != 0 ? config.handler_threads : 4 * cores()) {}

  ServerConfig config;
  Handler handler;
  std::unique_ptr<detail::TlsContext> tls;
  std::shared_ptr<const Clock> clock;
  std::uint16_t port = 0;

  std::atomic<std::size_t> connections{0};
  std::atomic<bool> draining{false};           // /healthz is 503, responses close their connection
  std::atomic<bool> accepting_stopped{false};  // listeners closing, idle connections closing
  std::atomic<std::size_t> listeners_open{0};

  std::mutex mutex;  // guards sessions; with cv, signals the drain's progress
  std::condition_variable cv;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> sessions;
  std::uint64_t next_session = 1;  // 0: not registered
  std::once_flag joined;

  asio::thread_pool handler_pool;
  std::atomic<std::size_t> next_worker{0};
  // Last: destroyed first, so connections still queued in an io_context find the state alive.
  std::vector<std::unique_ptr<Worker>> workers;

  std::uint64_t add_session(const std::shared_ptr<Connection>& c) {
    std::lock_guard lock(mutex);
    const auto id = next_session++;
    sessions.emplace(id, c);
    return id;
  }
  void remove_session(std::uint64_t id) {
    {
      std::lock_guard lock(mutex);
      if (id != 0) sessions.erase(id);
      connections.fetch_sub(1);
    }
    cv.notify_all();
  }
  void for_each_session(auto fn) {
    std::vector<std::shared_ptr<Connection>> live;
    {
      std::lock_guard lock(mutex);
      for (auto& [id, weak] : sessions) {
        if (auto s = weak.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) asio::post(s->executor(), [s, fn] { fn(*s); });
  }

  Response call_handler(const Request& request) {
    try {
      return handler(request);
    } catch (const std::exception& e) {
      log::error("http_handler_exception", {{"request_id", request.request_id}, {"what", e.what()}});
      return problem(500, "internal", "internal error");
    }
  }

  void accept(Worker& w);
  void on_accept(Worker& w, error_code ec, tcp::socket socket);
  void begin_drain();
  void stop_accepting();
  void wait_and_join();
};

namespace {

// One connection: owns its stream and buffer; a timeout is set before each operation; a fresh parser
// with limits per request; the handler runs on the handler pool and the write is posted back here.
template <bool Tls>
class Session final : public Connection {
  using Stream = std::conditional_t<Tls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;
  enum class Phase { handshake, idle, header, body, handler, write, closing, closed };

 public:
  Session(Server::State& state, tcp::socket socket, std::string remote)
      : state_(state), stream_(make_stream(state, std::move(socket))) {
    peer_.remote_address = std::move(remote);
  }
  ~Session() override { state_.remove_session(id_); }

  void start() override {
    id_ = state_.add_session(shared_from_this());
    if constexpr (Tls) {
      state_.tls->attach(stream_.native_handle(), notes_);
      lowest().expires_after(state_.config.timeouts.handshake);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = self()](error_code ec) { self->on_handshake(ec); });
    } else {
      read_header();
    }
  }

  void drain() override {
    if (phase_ == Phase::handshake || phase_ == Phase::idle) close();
  }
  void force_close() override { close(); }
  asio::any_io_executor executor() override { return stream_.get_executor(); }

 private:
  static Stream make_stream(Server::State& state, tcp::socket socket) {
    if constexpr (Tls) {
      return Stream(std::move(socket), state.tls->asio());
    } else {
      (void)state;
      return Stream(std::move(socket));
    }
  }
  std::shared_ptr<Session> self() { return std::static_pointer_cast<Session>(shared_from_this()); }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void on_handshake(error_code ec) {
    if (ec) {
      if (log::level() <= log::Level::debug) {
        log::debug("tls_handshake_failed",
                   {{"remote", peer_.remote_address},
                    {"reason", ec.message()},
                    {"verify", notes_.error != 0 ? X509_verify_cert_error_string(notes_.error) : ""}});
      }
      return close();
    }
    if (state_.accepting_stopped) return shutdown();
    auto peer = state_.tls->peer(stream_.native_handle(), notes_);
    const auto remote = std::move(peer_.remote_address);
    peer_ = std::move(peer.identity);
    peer_.remote_address = remote;
    trusted_proxy_ = peer.trusted_proxy;
    read_header();
  }

  // Between requests: wait for the first byte under the idle timeout, then read under the header one.
  void read_next() {
    if (state_.accepting_stopped) return shutdown();
    if (buffer_.size() > 0) return read_header();
    phase_ = Phase::idle;
    lowest().expires_after(state_.config.timeouts.idle);
    stream_.async_read_some(buffer_.prepare(kReadChunk), [self = self()](error_code ec, std::size_t n) {
      if (ec) return self->close();
      self->buffer_.commit(n);
      self->read_header();
    });
  }

  void read_header() {
    phase_ = Phase::header;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(state_.config.max_header_bytes));
    parser_->body_limit(state_.config.max_body_bytes);
    lowest().expires_after(state_.config.timeouts.header);
    bhttp::async_read_header(stream_, buffer_, *parser_, [self = self()](error_code ec, std::size_t) {
      if (ec) return self->on_read_error(ec);
      self->on_header();
    });
  }

  void on_header() {
    const auto& req = parser_->get();
    if (!parser_->is_done() && iequals(req[bhttp::field::expect], "100-continue")) {
      // curl and others wait for this before sending a large body.
      phase_ = Phase::write;
      out_ = "HTTP/1.1 100 Continue\r\n\r\n";
      lowest().expires_after(state_.config.timeouts.write);
      asio::async_write(stream_, asio::buffer(out_), [self = self()](error_code ec, std::size_t) {
        if (ec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return on_request();
    phase_ = Phase::body;
    lowest().expires_after(state_.config.timeouts.body);
    bhttp::async_read(stream_, buffer_, *parser_, [self = self()](error_code ec, std::size_t) {
      if (ec) return self->on_read_error(ec);
      self->on_request();
    });
  }

  void on_read_error(error_code ec) {
    if (ec == bhttp::error::header_limit) {
      return respond_error(
          431, "header_too_large",
          "request header exceeds " + std::to_string(state_.config.max_header_bytes) + " bytes");
    }
    if (ec == bhttp::error::body_limit) {
      return respond_error(413, "body_too_large",
                           "request body exceeds " + std::to_string(state_.config.max_body_bytes) + " bytes");
    }
    if (ec == beast::error::timeout) {
      // Beast closed the socket: nobody to tell.
      log::info("http_timeout",
                {{"remote", peer_.remote_address}, {"phase", phase_ == Phase::header ? "header" : "body"}});
      return close();
    }
    const bool nothing_read = phase_ == Phase::header && parser_ && !parser_->got_some();
    if (ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message && !nothing_read) {
      return respond_error(400, "malformed_request", ec.message());
    }
    close();  // end of stream, reset, TLS truncation, cancellation
  }

  void on_request() {
    auto message = parser_->release();
    parser_.reset();
    Request request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    if (!request.target.starts_with('/')) {
      return respond_error(400, "malformed_request", "request target must be a path");
    }
    for (const auto& field : message) {
      request.headers.add(std::string(field.name_string()), std::string(field.value()));
    }
    request.body = std::move(message.body());
    keep_alive_ = message.keep_alive();
    head_ = message.method() == bhttp::verb::head;
    request.peer = peer_;

    const auto& proxies = state_.config.trusted_proxies;
    const std::size_t forwarded = request.headers.count(proxies.header);
    if (trusted_proxy_) {
      request.peer.via_proxy = true;
      request.peer.verified = false;  // the forwarded chain is the proxy's word, not our handshake
      if (forwarded > 1) {
        return respond_error(400, "bad_client_cert_header", "more than one " + proxies.header + " header");
      }
      if (forwarded == 1) {
        auto chain = detail::parse_forwarded_certificate(*request.headers.get(proxies.header));
        if (!chain) {
          return respond_error(400, "bad_client_cert_header", proxies.header + ": " + chain.error().detail);
        }
        request.peer.chain = std::move(*chain);
        const auto now = state_.clock->now();
        request.peer.expired = std::ranges::any_of(request.peer.chain, [&](const x509::Certificate& c) {
          return c.not_after() < now || c.not_before() > now;
        });
      }
      if (auto upstream = request.headers.get("X-Request-Id"); upstream && is_sane_request_id(*upstream)) {
        request.request_id = std::string(*upstream);
      }
    } else if (forwarded > 0) {
      request.spoofed_client_cert_header = true;
    }
    if (request.request_id.empty()) request.request_id = make_request_id();
    request_id_ = request.request_id;

    if (request.path() == "/healthz" && (request.method == "GET" || head_)) {
      return write(state_.draining ? Response::text(503, "draining\n") : Response::text(200, "ok\n"));
    }
    phase_ = Phase::handler;
    if (state_.config.answers_inline && state_.config.answers_inline(request)) {
      return write(state_.call_handler(request));
    }
    asio::post(state_.handler_pool, [self = self(), request = std::move(request)]() mutable {
      Response response = self->state_.call_handler(request);
      auto ex = self->stream_.get_executor();
      asio::post(ex, [self = std::move(self), response = std::move(response)]() mutable {
        self->write(std::move(response));
      });
    });
  }

  void respond_error(int status, std::string_view code, std::string detail) {
    log::info("http_refused", {{"remote", peer_.remote_address},
                               {"status", std::to_string(status)},
                               {"code", std::string(code)},
                               {"detail", detail}});
    keep_alive_ = false;
    linger_ = true;
    head_ = false;
    request_id_ = make_request_id();
    parser_.reset();
    write(problem(status, code, detail));
  }

  // The whole response in one buffer: one write, so header and body leave together (TCP_NODELAY).
  void write(Response response) {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::write;
    bool valid = response.status >= 200 && response.status <= 999;
    for (const auto& f : response.headers)
      valid = valid && !f.name.empty() && !has_crlf(f.name) && !has_crlf(f.value);
    if (!valid) {
      log::error("http_bad_response",
                 {{"request_id", request_id_}, {"status", std::to_string(response.status)}});
      response = problem(500, "internal", "internal error");
    }
    if (state_.draining) keep_alive_ = false;
    const bool no_body = response.status == 204 || response.status == 304;
    out_.clear();
    out_.reserve(256 + response.body.size());
    out_ += "HTTP/1.1 ";
    out_ += std::to_string(response.status);
    out_ += ' ';
    out_ += reason_phrase(response.status);
    out_ += "\r\n";
    for (const auto& f : response.headers) {
      if (iequals(f.name, "Content-Length") || iequals(f.name, "Transfer-Encoding") ||
          iequals(f.name, "Connection") || iequals(f.name, "X-Request-Id")) {
        continue;
      }
      out_ += f.name;
      out_ += ": ";
      out_ += f.value;
      out_ += "\r\n";
    }
    out_ += "X-Request-Id: ";
    out_ += request_id_;
    out_ += "\r\n";
    if (!no_body) {
      out_ += "Content-Length: ";
      out_ += std::to_string(response.body.size());
      out_ += "\r\n";
    }
    if (!keep_alive_) out_ += "Connection: close\r\n";
    out_ += "\r\n";
    if (!head_ && !no_body) out_ += response.body;
    lowest().expires_after(state_.config.timeouts.write);
    asio::async_write(stream_, asio::buffer(out_), [self = self()](error_code ec, std::size_t) {
      if (ec) return self->close();
      self->out_.clear();
      if (!self->keep_alive_) return self->linger_ ? self->linger() : self->shutdown();
      self->read_next();
    });
  }

  // After an error answer the client may still be sending (a body we refused): read and discard a
  // little, so that closing does not reset the connection before the client has read the answer.
  void linger() {
    phase_ = Phase::closing;
    if (lingered_ >= kLingerBytes) return shutdown();
    if (lingered_ == 0) lowest().expires_after(kLingerTimeout);
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(16 * 1024), [self = self()](error_code ec, std::size_t n) {
      if (ec) return self->close();
      self->lingered_ += n;
      self->linger();
    });
  }

  void shutdown() {
    phase_ = Phase::closing;
    if constexpr (Tls) {
      lowest().expires_after(kShutdownTimeout);
      stream_.async_shutdown([self = self()](error_code) { self->close(); });
    } else {
      error_code ec;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
      close();
    }
  }

  void close() {
    phase_ = Phase::closed;
    lowest().close();
  }

  Server::State& state_;
  detail::HandshakeNotes notes_;  // before stream_: the SSL points at it
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  PeerIdentity peer_;
  bool trusted_proxy_ = false;
  Phase phase_ = Tls ? Phase::handshake : Phase::header;
  bool keep_alive_ = true;
  bool head_ = false;
  bool linger_ = false;
  std::size_t lingered_ = 0;
  std::string request_id_;
  std::string out_;
  std::uint64_t id_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------

void Server::State::accept(Worker& w) {
  auto& target = config.reuse_port ? w : *workers[next_worker.fetch_add(1) % workers.size()];
  w.acceptor->async_accept(
      target.ioc, [this, &w](error_code ec, tcp::socket socket) { on_accept(w, ec, std::move(socket)); });
}

void Server::State::on_accept(Worker& w, error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !w.acceptor->is_open()) return;
  if (ec) {
    // Out of descriptors and the like: back off briefly rather than spin.
    log::warn("http_accept_failed", {{"reason", ec.message()}});
    w.timer->expires_after(std::chrono::milliseconds(50));
    w.timer->async_wait([this, &w](error_code e) {
      if (!e && w.acceptor->is_open()) accept(w);
    });
    return;
  }
  if (connections.fetch_add(1) >= config.max_connections) {
    connections.fetch_sub(1);
    error_code ignored;
    socket.close(ignored);
    log::debug("http_connection_refused", {{"reason", "max_connections"}});
  } else {
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const auto remote = socket.remote_endpoint(ignored);
    std::string address = remote.address().to_string() + ":" + std::to_string(remote.port());
    auto ex = socket.get_executor();
    std::shared_ptr<Connection> session;
    if (config.tls) {
      session = std::make_shared<Session<true>>(*this, std::move(socket), std::move(address));
    } else {
      session = std::make_shared<Session<false>>(*this, std::move(socket), std::move(address));
    }
    asio::post(ex, [session] { session->start(); });
  }
  accept(w);
}

void Server::State::begin_drain() {
  if (draining.exchange(true)) return;
  log::info("http_drain_begin", {{"connections", std::to_string(connections.load())}});
  auto& w0 = *workers.front();
  asio::post(w0.ioc, [this, &w0] {
    w0.timer->cancel();
    w0.timer->expires_after(config.timeouts.drain_delay);
    w0.timer->async_wait([this](error_code) { stop_accepting(); });
  });
}

void Server::State::stop_accepting() {
  accepting_stopped = true;
  for (auto& w : workers) {
    asio::post(w->ioc, [this, w = w.get()] {
      error_code ignored;
      if (w->acceptor && w->acceptor->is_open()) {
        w->acceptor->close(ignored);
        {
          std::lock_guard lock(mutex);
          listeners_open.fetch_sub(1);
        }
        cv.notify_all();
      }
      w->timer->cancel();
    });
  }
  for_each_session([](Connection& c) { c.drain(); });
  {
    std::lock_guard lock(mutex);  // so that a waiter cannot miss the flag between test and wait
  }
  cv.notify_all();
}

void Server::State::wait_and_join() {
  {
    std::unique_lock lock(mutex);
    const auto deadline =
        std::chrono::steady_clock::now() + config.timeouts.drain_delay + config.timeouts.drain;
    const auto drained = [&] { return accepting_stopped && listeners_open == 0 && connections == 0; };
    if (!cv.wait_until(lock, deadline, drained)) {
      lock.unlock();
      log::warn("http_drain_timeout", {{"connections", std::to_string(connections.load())}});
      for_each_session([](Connection& c) { c.force_close(); });
      lock.lock();
      cv.wait_for(lock, std::chrono::seconds(2), drained);
    }
  }
  handler_pool.join();
  for (auto& w : workers) {
    w->work.reset();
    w->ioc.stop();
  }
  for (auto& w : workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  for (auto& w : workers) {  // the threads are gone: safe from here
    error_code ignored;
    if (w->acceptor) w->acceptor->close(ignored);
  }
  log::info("http_stopped");
}

// ---------------------------------------------------------------------------------------------------

Server::Server(std::shared_ptr<State> state) : state_(std::move(state)) {}

Server::~Server() {
  stop();
}

std::uint16_t Server::port() const noexcept {
  return state_->port;
}
std::size_t Server::connections() const noexcept {
  return state_->connections.load();
}
bool Server::draining() const noexcept {
  return state_->draining.load();
}

void Server::request_stop() {
  state_->begin_drain();
}

void Server::stop() {
  state_->begin_drain();
  std::call_once(state_->joined, [this] { state_->wait_and_join(); });
}

Result<std::unique_ptr<Server>> Server::start(ServerConfig config, Handler handler) {
  HM_TRY_VOID(validate_static(config));
  if (!handler) return fail(Errc::invalid_input, "[" + config.section + "] no request handler");
  auto state = std::make_shared<State>(std::move(config), std::move(handler));
  const auto& c = state->config;
  state->clock = c.clock ? c.clock : std::make_shared<SystemClock>();
  if (c.tls) state->tls = HM_TRY(detail::TlsContext::make(c));

  const unsigned n = c.threads != 0 ? c.threads : cores();
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    w->timer.emplace(w->ioc);
    state->workers.push_back(std::move(w));
  }
  const auto address = asio::ip::make_address(c.listen);
  std::uint16_t port = c.port;
  const std::size_t listeners = c.reuse_port ? state->workers.size() : 1;
  for (std::size_t i = 0; i < listeners; ++i) {
    auto& w = *state->workers[i];
    const tcp::endpoint endpoint(address, port);
    auto where = endpoint.address().to_string() + ":" + std::to_string(c.port);
    error_code ec;
    w.acceptor.emplace(w.ioc);
    if (w.acceptor->open(endpoint.protocol(), ec); ec) {
      return fail(Errc::unavailable, field_error(c, "listen", "cannot open a socket: " + ec.message()));
    }
    w.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (c.reuse_port) {
      const int one = 1;
      if (::setsockopt(w.acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        return fail(Errc::unavailable, field_error(c, "reuse_port", "SO_REUSEPORT is not available"));
      }
    }
    if (w.acceptor->bind(endpoint, ec); ec) {
      return fail(Errc::unavailable, field_error(c, "listen", "cannot bind " + where + ": " + ec.message()));
    }
    if (w.acceptor->listen(asio::socket_base::max_listen_connections, ec); ec) {
      return fail(Errc::unavailable,
                  field_error(c, "listen", "cannot listen on " + where + ": " + ec.message()));
    }
    port = w.acceptor->local_endpoint().port();  // the ephemeral port, for the others to share
  }
  state->port = port;
  state->listeners_open = listeners;

  for (std::size_t i = 0; i < listeners; ++i) state->accept(*state->workers[i]);
  for (auto& w : state->workers) {
    w->thread = std::thread([w = w.get()] {
      for (;;) {
        try {
          w->ioc.run();
          return;
        } catch (const std::exception& e) {
          log::error("http_io_exception", {{"what", e.what()}});
        }
      }
    });
  }
  log::info("http_listening", {{"address", c.listen},
                               {"port", std::to_string(port)},
                               {"tls", c.tls ? "on" : "off"},
                               {"threads", std::to_string(n)}});
  return std::unique_ptr<Server>(new Server(std::move(state)));
}

}  // namespace hallmark::http
