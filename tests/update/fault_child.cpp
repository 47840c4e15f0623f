// Test helper for fault_test.cpp: calls update::FaultPoint("step:<i>") for
// i = 1..N (argv[1]) in a fresh process, so the environment is read anew.
#include <cstdlib>
#include <string>

#include "update/fault.hpp"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const int count = std::atoi(argv[1]);
  for (int i = 1; i <= count && i <= 10000; ++i) citadel::update::FaultPoint("step:" + std::to_string(i));
  return 0;
}
