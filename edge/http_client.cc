#include "edge/http_client.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chat::edge {
namespace {

struct Body {
  std::string data;
  size_t max_bytes;
  bool too_large = false;
};

size_t Write(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* body = static_cast<Body*>(userdata);
  const size_t n = size * nmemb;
  if (body->data.size() + n > body->max_bytes) {
    body->too_large = true;
    return 0;  // curl aborts with CURLE_WRITE_ERROR
  }
  body->data.append(ptr, n);
  return n;
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

absl::StatusOr<HttpReply> PerformHttp(const HttpCall& call) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  std::unique_ptr<curl_slist, CurlFree> headers;
  for (const auto& [name, value] : call.headers) {
    const std::string line = absl::StrCat(name, ": ", value);
    curl_slist* grown = curl_slist_append(headers.get(), line.c_str());
    if (grown == nullptr) return absl::InternalError("curl_slist_append failed");
    headers.release();
    headers.reset(grown);
  }
  Body body{"", call.max_bytes};
  char error[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  const long timeout_ms = static_cast<long>(absl::ToInt64Milliseconds(call.timeout));
  curl_easy_setopt(c, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, call.max_redirects > 0 ? 1L : 0L);
  if (call.max_redirects > 0) {
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, static_cast<long>(call.max_redirects));
  }
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // signals and threads do not mix
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (call.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, call.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(call.body.size()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  const CURLcode rc = curl_easy_perform(c);
  if (body.too_large) {
    return absl::ResourceExhaustedError(
        absl::StrCat(call.method, " ", call.url, ": body larger than ", call.max_bytes, " bytes"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(call.method, " ", call.url, ": ",
                                               error[0] != 0 ? error : curl_easy_strerror(rc)));
  }
  HttpReply reply;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  reply.body = std::move(body.data);
  return reply;
}

}  // namespace chat::edge
