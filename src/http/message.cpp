#include "hallmark/http/message.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace hallmark::http {
namespace {

char lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void Headers::add(std::string name, std::string value) {
  fields_.push_back({std::move(name), std::move(value)});
}

void Headers::set(std::string name, std::string value) {
  erase(name);
  add(std::move(name), std::move(value));
}

std::size_t Headers::erase(std::string_view name) {
  return std::erase_if(fields_, [&](const Field& f) { return iequals(f.name, name); });
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& f : fields_) {
    if (iequals(f.name, name)) return std::string_view(f.value);
  }
  return std::nullopt;
}

std::size_t Headers::count(std::string_view name) const {
  return static_cast<std::size_t>(
      std::ranges::count_if(fields_, [&](const Field& f) { return iequals(f.name, name); }));
}

std::string_view to_string(TlsVersion v) noexcept {
  switch (v) {
    case TlsVersion::tls1_2: return "TLSv1.2";
    case TlsVersion::tls1_3: return "TLSv1.3";
    case TlsVersion::none: break;
  }
  return "none";
}

std::string_view to_string(ChannelBinding::Type t) noexcept {
  switch (t) {
    case ChannelBinding::Type::tls_unique: return "tls-unique";
    case ChannelBinding::Type::tls_exporter: return "tls-exporter";
    case ChannelBinding::Type::none: break;
  }
  return "none";
}

std::string_view Request::path() const noexcept {
  const std::string_view t(target);
  return t.substr(0, t.find('?'));
}

std::string_view Request::query() const noexcept {
  const std::string_view t(target);
  const auto q = t.find('?');
  return q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
}

Response Response::text(int status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.headers.add("Content-Type", std::move(content_type));
  r.body = std::move(body);
  return r;
}

Response Response::json(int status, std::string body) {
  return text(status, std::move(body), "application/json");
}

Response problem(int status, std::string_view code, std::string_view detail, std::string_view title) {
  const nlohmann::json j = {
      {"type", "about:blank"}, {"title", title.empty() ? reason_phrase(status) : title},
      {"status", status},      {"detail", detail},
      {"code", code},
  };
  return Response::text(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                        "application/problem+json");
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

}  // namespace hallmark::http
