#pragma once
// An EST server that misbehaves on purpose, for the agent's refusals: it speaks TLS with a
// certificate the devices trust, answers cacerts with the real chain and csrattrs with 204, and
// answers simpleenroll / simplereenroll wrongly, as its Answer says. It runs on 127.0.0.1, port 0,
// in a thread of its own; a test talks to it with the real agent.
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <string>
#include <thread>

namespace hallmark::testing {

class RogueEstServer {
 public:
  enum class Answer {
    as_given,            // the `issued` body as it is (e.g. a certificate for a key the device never had)
    cut_short,           // Content-Length of the whole body, half of it sent, then the connection closed
    half_of_base64,      // a well-framed answer whose base64 body stops halfway (at a 4-character quantum)
    busy_then_as_given,  // 202 with Retry-After: 2, then 503 with Retry-After: 3, then as_given
  };

  // `chain_pem` and `key_pem` (unencrypted): the TLS certificate chain and key. `cacerts` and
  // `issued`: the base64 bodies of the cacerts and simple(re)enroll answers.
  RogueEstServer(Answer answer, const std::string& chain_pem, const std::string& key_pem, std::string cacerts,
                 std::string issued)
      : answer_(answer),
        cacerts_(std::move(cacerts)),
        issued_(std::move(issued)),
        tls_(boost::asio::ssl::context::tls_server),
        acceptor_(io_) {
    tls_.use_certificate_chain(boost::asio::buffer(chain_pem));
    tls_.use_private_key(boost::asio::buffer(key_pem), boost::asio::ssl::context::pem);
    const tcp::endpoint endpoint(boost::asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  RogueEstServer(const RogueEstServer&) = delete;
  RogueEstServer& operator=(const RogueEstServer&) = delete;
  ~RogueEstServer() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string url(const std::string& alias) const {
    return "https://127.0.0.1:" + std::to_string(port_) + "/.well-known/est/" + alias;
  }
  // simpleenroll and simplereenroll requests answered so far.
  [[nodiscard]] int enroll_requests() const { return enroll_requests_; }

 private:
  using tcp = boost::asio::ip::tcp;
  using Stream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

  boost::asio::awaitable<void> accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return;
      boost::asio::co_spawn(io_, serve(Stream(std::move(socket), tls_)), boost::asio::detached);
    }
  }

  boost::asio::awaitable<void> serve(Stream stream) {
    namespace http = boost::beast::http;
    boost::system::error_code ec;
    auto with_ec = boost::asio::redirect_error(boost::asio::use_awaitable, ec);
    boost::beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
    co_await stream.async_handshake(boost::asio::ssl::stream_base::server, with_ec);
    if (ec) co_return;
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      boost::beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
      co_await http::async_read(stream, buffer, req, with_ec);
      if (ec) co_return;
      const std::string target(req.target());
      http::response<http::string_body> res{http::status::ok, 11};
      res.keep_alive(req.keep_alive());
      if (target.ends_with("/cacerts")) {
        res.set(http::field::content_type, "application/pkcs7-mime; smime-type=certs-only");
        res.set("Content-Transfer-Encoding", "base64");
        res.body() = cacerts_;
      } else if (target.ends_with("/csrattrs")) {
        res.result(http::status::no_content);
      } else if (target.ends_with("/simpleenroll") || target.ends_with("/simplereenroll")) {
        ++enroll_requests_;
        res.set(http::field::content_type, "application/pkcs7-mime; smime-type=certs-only");
        res.set("Content-Transfer-Encoding", "base64");
        if (answer_ == Answer::cut_short) {
          // The head promises the whole body; half of it goes out, then close_notify and the end.
          std::string cut =
              "HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only\r\n"
              "Content-Transfer-Encoding: base64\r\nContent-Length: " +
              std::to_string(issued_.size()) + "\r\n\r\n" + issued_.substr(0, issued_.size() / 2);
          co_await boost::asio::async_write(stream, boost::asio::buffer(cut), with_ec);
          co_await stream.async_shutdown(with_ec);
          co_return;
        }
        if (answer_ == Answer::busy_then_as_given && enroll_requests_ <= 2) {
          const bool first = enroll_requests_ == 1;
          res.result(first ? http::status::accepted : http::status::service_unavailable);
          res.set(http::field::retry_after, first ? "2" : "3");
          res.set(http::field::content_type, "application/problem+json");
          res.erase("Content-Transfer-Encoding");
          res.body() =
              first ? R"({"type":"about:blank","title":"pending","status":202,"code":"pending"})"
                    : R"({"type":"about:blank","title":"busy","status":503,"code":"store-unavailable"})";
          res.prepare_payload();
          co_await http::async_write(stream, res, with_ec);
          if (ec || !req.keep_alive()) co_return;
          continue;
        }
        // Cut at a base64 quantum, so the body decodes, to half a PKCS#7.
        res.body() = answer_ == Answer::half_of_base64 ? issued_.substr(0, issued_.size() / 8 * 4) : issued_;
      } else {
        res.result(http::status::not_found);
      }
      res.prepare_payload();
      co_await http::async_write(stream, res, with_ec);
      if (ec || !req.keep_alive()) co_return;
    }
  }

  Answer answer_;
  std::string cacerts_, issued_;
  boost::asio::io_context io_;
  boost::asio::ssl::context tls_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> enroll_requests_{0};
};

}  // namespace hallmark::testing
