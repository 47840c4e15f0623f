#include "tuf/memory_fetcher.hpp"

#include <algorithm>
#include <string_view>

namespace citadel::tuf::testing {
namespace {

// An endless body is bounded all the same, so a broken client cannot hang
// a test: 64 MiB is far beyond every max_length the tests use.
constexpr std::uint64_t kEndlessLimit = 64ULL << 20;

}  // namespace

const std::string* MemoryFetcher::Find(const std::string& url) const {
  auto found = files_.find(url);
  return found == files_.end() ? nullptr : &found->second;
}

std::vector<std::string> MemoryFetcher::requested_urls() const {
  std::vector<std::string> urls;
  urls.reserve(requests_.size());
  for (const auto& request : requests_) urls.push_back(request.url);
  return urls;
}

std::uint64_t MemoryFetcher::bytes_sent(const std::string& url) const {
  auto found = bytes_sent_.find(url);
  return found == bytes_sent_.end() ? 0 : found->second;
}

void MemoryFetcher::ClearLog() {
  requests_.clear();
  bytes_sent_.clear();
  total_bytes_sent_ = 0;
}

Expected<FetchResult> MemoryFetcher::Fetch(const FetchRequest& request, const FetchSink& sink) {
  requests_.push_back(request);
  Fault fault;
  if (auto found = faults_.find(request.url); found != faults_.end()) fault = found->second;
  const std::string* file = Find(request.url);
  if (fault.drop || (file == nullptr && !fault.serve_instead && !fault.endless)) {
    return MakeError(ErrorCode::kNotFound, "404 " + request.url);
  }
  const std::string body = fault.serve_instead ? *fault.serve_instead : (file != nullptr ? *file : std::string());
  const std::uint64_t size = fault.endless ? kEndlessLimit : body.size();

  std::uint64_t position = 0;
  FetchResult result;
  if (request.offset > 0 && !fault.ignore_range) {
    if (request.offset > size) return MakeError(ErrorCode::kUnavailable, "416 " + request.url);
    position = request.offset;
    result.resumed = true;
  }
  std::string chunk;
  while (position < size) {
    std::uint64_t count = std::min<std::uint64_t>(chunk_size_, size - position);
    if (fault.cut_after && result.bytes_received + count > *fault.cut_after) {
      count = *fault.cut_after - result.bytes_received;
    }
    if (!fault.ignore_max_length && position + count > request.max_length) {
      count = request.max_length > position ? request.max_length - position : 0;
      if (count == 0) {
        return MakeError(ErrorCode::kTooLarge, request.url + " is longer than " + std::to_string(request.max_length));
      }
    }
    if (count == 0) return MakeError(ErrorCode::kUnavailable, "connection reset after " + std::to_string(position));
    if (fault.endless) {
      chunk.assign(static_cast<std::size_t>(count), 'x');
    } else {
      chunk.assign(body, static_cast<std::size_t>(position), static_cast<std::size_t>(count));
    }
    result.bytes_received += count;
    bytes_sent_[request.url] += count;
    total_bytes_sent_ += count;
    CITADEL_TRY_VOID(sink(position, chunk));
    position += count;
  }
  return result;
}

}  // namespace citadel::tuf::testing
