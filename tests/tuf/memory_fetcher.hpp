// MemoryFetcher: a fake tuf::Fetcher serving files from memory by URL, with
// fault switches to play a hostile or broken server. For logic tests of the
// TUF client (tests/tuf) and anything built on it; it honours the Fetcher
// contract (src/tuf/fetcher.hpp) unless a fault says otherwise.
//
// Threading: not thread-safe; tests drive it from one thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tuf/fetcher.hpp"

namespace citadel::tuf::testing {

class MemoryFetcher : public Fetcher {
 public:
  // How a URL misbehaves. Faults combine; an empty Fault is a good server.
  struct Fault {
    bool drop = false;                           // 404 (kNotFound) as if the file did not exist
    std::optional<std::string> serve_instead{};  // these bytes instead of the file's
    bool endless = false;                        // a body that never ends ('x' bytes)
    std::optional<std::uint64_t> cut_after{};    // cut the transfer after N body bytes (kUnavailable)
    bool ignore_range = false;                   // always answer from byte 0 (a 200 to a range request)
    bool ignore_max_length = false;              // break the contract: hand the sink more than max_length
  };

  void Put(const std::string& url, std::string data) { files_[url] = std::move(data); }
  void Remove(const std::string& url) { files_.erase(url); }
  // The file's bytes, or nullptr.
  const std::string* Find(const std::string& url) const;
  // Every served file by URL (e.g. to mirror the repository into a
  // directory an HTTP server serves).
  const std::map<std::string, std::string>& files() const { return files_; }

  void SetFault(const std::string& url, Fault fault) { faults_[url] = std::move(fault); }
  void ClearFault(const std::string& url) { faults_.erase(url); }
  void ClearFaults() { faults_.clear(); }
  // Size of the chunks handed to the sink (default 4096).
  void set_chunk_size(std::size_t size) { chunk_size_ = size == 0 ? 1 : size; }

  // Every request, in order, and the body bytes sent per URL / in total.
  const std::vector<FetchRequest>& requests() const { return requests_; }
  std::vector<std::string> requested_urls() const;
  std::uint64_t bytes_sent(const std::string& url) const;
  std::uint64_t total_bytes_sent() const { return total_bytes_sent_; }
  void ClearLog();

  Expected<FetchResult> Fetch(const FetchRequest& request, const FetchSink& sink) override;

 private:
  std::map<std::string, std::string> files_;
  std::map<std::string, Fault> faults_;
  std::size_t chunk_size_ = 4096;
  std::vector<FetchRequest> requests_;
  std::map<std::string, std::uint64_t> bytes_sent_;
  std::uint64_t total_bytes_sent_ = 0;
};

}  // namespace citadel::tuf::testing
