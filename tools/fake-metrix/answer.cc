#include "tools/fake-metrix/answer.h"

#include <nlohmann/json.hpp>

namespace fake_metrix {

std::string default_error_name(int status) {
  switch (status) {
    case 400: return kBadRequest;
    case 401: return "UNAUTHORIZED";
    case 403: return kInvalidParameters;
    case 404: return kNoSuchEvent;
    case 408: return "REQUEST_TIMEOUT";
    case 413: return "PAYLOAD_TOO_LARGE";
    case 429: return "TOO_MANY_REQUESTS";
    case 500: return "INTERNAL_SERVER_ERROR";
    case 502: return "BAD_GATEWAY";
    case 503: return "SERVICE_UNAVAILABLE";
    case 504: return "GATEWAY_TIMEOUT";
  }
  if (status >= 200 && status < 300) return {};
  if (status >= 500) return "INTERNAL_SERVER_ERROR";
  return kBadRequest;
}

Answer error_answer(int status) {
  return Answer{status, default_error_name(status), "fake-metrix: injected " + std::to_string(status)};
}

std::string answer_body(const Answer& answer) {
  nlohmann::json body = nlohmann::json::object();
  if (!answer.error.empty()) body["error"] = answer.error;
  body["status"] = answer.status;
  body["message"] = answer.message;
  // `replace` rather than throwing: a message may quote an app id taken from
  // the URL, which is not guaranteed to be UTF-8.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace fake_metrix
