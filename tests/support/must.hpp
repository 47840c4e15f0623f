// Must(expected): the value of a test step that cannot go on without it. A
// failure is reported through GoogleTest (with the error's message) and the
// test binary aborts, so a broken precondition never reads as a later,
// confusing assertion.
#pragma once

#include <cstdlib>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

#include "common/error.hpp"

namespace citadel::testing {

template <typename T>
T Must(Expected<T> value) {
  if (!value) {
    ADD_FAILURE() << value.error().message();
    std::abort();
  }
  return std::move(*value);
}

// The same, naming the step in the failure ("creating the service: ...").
template <typename T>
T Must(Expected<T> value, std::string_view what) {
  if (!value) {
    ADD_FAILURE() << what << ": " << value.error().message();
    std::abort();
  }
  return std::move(*value);
}

}  // namespace citadel::testing
