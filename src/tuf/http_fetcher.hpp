// The TUF Fetcher (tuf/fetcher.hpp) over HTTP(S): http::Downloader does the
// bounded, resumable, speed-checked transfer; this adapter only maps one
// contract onto the other. Separate library (citadel_tuf_http) so the TUF
// logic itself does not depend on the network stack.
#pragma once

#include <memory>

#include "common/error.hpp"
#include "http/fetch.hpp"
#include "tuf/fetcher.hpp"

namespace citadel::tuf {

class HttpFetcher final : public Fetcher {
 public:
  static Expected<std::unique_ptr<HttpFetcher>> Create(http::DownloaderOptions options);

  Expected<FetchResult> Fetch(const FetchRequest& request, const FetchSink& sink) override;

 private:
  explicit HttpFetcher(std::unique_ptr<http::Downloader> downloader) : downloader_(std::move(downloader)) {}
  std::unique_ptr<http::Downloader> downloader_;
};

}  // namespace citadel::tuf
