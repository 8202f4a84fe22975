// Answer: one HTTP answer fake-metrix gives to an S2S request, and the JSON
// body it is sent with.
//
// Error names are the ones in the Metrix S2S API's error table (README "The Metrix S2S
// API"); the body shape is
//   {"error":"EVENT_TYPE_DOES_NOT_EXIST","status":404,"message":"..."}
// for errors and {"status":200,"message":"event accepted"} for success, so a
// client can classify an answer by status code and error name alone.
#pragma once

#include <string>

namespace fake_metrix {

// The reference's error names, spelled once.
inline constexpr const char* kBadRequest = "BAD_REQUEST";
inline constexpr const char* kNoDeviceId = "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL";
inline constexpr const char* kTwoDeviceIds = "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET";
inline constexpr const char* kS2sDisabled = "S2S_FEATURE_NOT_AVAILABLE";
inline constexpr const char* kInvalidParameters = "INVALID_PARAMETERS";
inline constexpr const char* kNoSuchEvent = "EVENT_TYPE_DOES_NOT_EXIST";

struct Answer {
  int status = 200;
  std::string error;    // Metrix error name; empty for 2xx
  std::string message;  // for humans; never contains a dev key
};

// The name fake-metrix uses for `status` when nothing more specific applies:
// 404 -> EVENT_TYPE_DOES_NOT_EXIST, 403 -> INVALID_PARAMETERS, 429 ->
// TOO_MANY_REQUESTS, 503 -> SERVICE_UNAVAILABLE, ...; empty for 2xx.
std::string default_error_name(int status);

// An error answer with the default name and a generic message.
Answer error_answer(int status);

// The JSON body for `answer` (see the file comment for its shape).
std::string answer_body(const Answer& answer);

}  // namespace fake_metrix
