#include "hallmark/revocation/config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>

#include "hallmark/est/config.hpp"

namespace hallmark::revocation {
namespace {

Error invalid(std::string text) {
  return Error{Errc::invalid_input, std::move(text)};
}

}  // namespace

Result<RevocationConfig> parse_revocation_config(std::string_view toml_text, std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return std::unexpected(invalid(fmt::format("{}:{}:{}: {}", origin, e.source().begin.line,
                                               e.source().begin.column, e.description())));
  }
  RevocationConfig c;
  c.server.section = "revocation";
  c.server.tls = false;
  c.server.port = 8080;
  const auto* node = root.get("revocation");
  if (node == nullptr) return c;
  const auto* t = node->as_table();
  const std::string where = fmt::format("{}: [revocation]", origin);
  if (t == nullptr) return std::unexpected(invalid(where + " must be a table"));
  c.enabled = true;
  static constexpr std::string_view kKeys[] = {
      "enabled",     "listen",        "port",          "threads", "handler_threads",    "crl_interval",
      "next_update", "ocsp_validity", "poll_interval", "crl_dir", "crl_reload_command", "crl_cas",
      "ocsp_cas"};
  for (const auto& [k, v] : *t) {
    if (std::find(std::begin(kKeys), std::end(kKeys), k.str()) == std::end(kKeys))
      return std::unexpected(invalid(fmt::format("{} unknown key '{}'", where, k.str())));
  }
  auto err = [&](std::string_view key, std::string_view text) {
    return std::unexpected(invalid(fmt::format("{} {} {}", where, key, text)));
  };
  auto string = [&](std::string_view key, std::string& out) -> Status {
    if (const auto* n = t->get(key)) {
      const auto* s = n->as_string();
      if (s == nullptr) return err(key, "must be a string");
      out = s->get();
    }
    return {};
  };
  auto integer = [&](std::string_view key, std::int64_t min, std::int64_t max, auto& out) -> Status {
    if (const auto* n = t->get(key)) {
      const auto* i = n->as_integer();
      if (i == nullptr) return err(key, "must be an integer");
      if (i->get() < min || i->get() > max)
        return err(key, fmt::format("must be between {} and {}", min, max));
      out = static_cast<std::remove_reference_t<decltype(out)>>(i->get());
    }
    return {};
  };
  auto duration = [&](std::string_view key, auto& out,
                      std::chrono::milliseconds min = std::chrono::seconds(1),
                      std::string_view min_text = "1s") -> Status {
    if (const auto* n = t->get(key)) {
      const auto* s = n->as_string();
      if (s == nullptr) return err(key, "must be a duration such as \"30s\", \"15m\", \"1h\" or \"7d\"");
      auto d = est::parse_duration(s->get(), false);
      if (!d) return err(key, d.error().detail);
      if (**d < min) return err(key, fmt::format("must be at least {}", min_text));
      out = std::chrono::duration_cast<std::remove_reference_t<decltype(out)>>(**d);
    }
    return {};
  };
  auto strings = [&](std::string_view key, std::vector<std::string>& out) -> Status {
    if (const auto* n = t->get(key)) {
      const auto* a = n->as_array();
      if (a == nullptr) return err(key, "must be an array of strings");
      for (const auto& e : *a) {
        const auto* s = e.as_string();
        if (s == nullptr) return err(key, "must be an array of strings");
        out.push_back(s->get());
      }
    }
    return {};
  };
  if (const auto* n = t->get("enabled")) {
    const auto* b = n->as_boolean();
    if (b == nullptr) return err("enabled", "must be true or false");
    c.enabled = b->get();
  }
  HM_TRY_VOID(string("listen", c.server.listen));
  HM_TRY_VOID(integer("port", 0, 65535, c.server.port));
  HM_TRY_VOID(integer("threads", 0, 1024, c.server.threads));
  HM_TRY_VOID(integer("handler_threads", 0, 4096, c.server.handler_threads));
  HM_TRY_VOID(duration("crl_interval", c.crl_interval));
  HM_TRY_VOID(duration("next_update", c.next_update));
  HM_TRY_VOID(duration("ocsp_validity", c.ocsp_validity));
  HM_TRY_VOID(duration("poll_interval", c.poll_interval, std::chrono::milliseconds(10), "10ms"));
  HM_TRY_VOID(string("crl_dir", c.crl_dir));
  HM_TRY_VOID(string("crl_reload_command", c.crl_reload_command));
  HM_TRY_VOID(strings("crl_cas", c.crl_cas));
  HM_TRY_VOID(strings("ocsp_cas", c.ocsp_cas));
  if (c.server.listen.empty()) return err("listen", "must not be empty");
  if (c.crl_dir.empty()) return err("crl_dir", "must not be empty");
  if (c.next_update <= c.crl_interval) {
    return std::unexpected(invalid(fmt::format(
        "{} next_update must be longer than crl_interval (relying parties would hold an expired CRL)",
        where)));
  }
  return c;
}

}  // namespace hallmark::revocation
