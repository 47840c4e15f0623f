#include "tuf/http_fetcher.hpp"

#include <utility>

namespace citadel::tuf {

Expected<std::unique_ptr<HttpFetcher>> HttpFetcher::Create(http::DownloaderOptions options) {
  CITADEL_TRY(auto downloader, http::Downloader::Create(std::move(options)));
  return std::unique_ptr<HttpFetcher>(new HttpFetcher(std::move(downloader)));
}

Expected<FetchResult> HttpFetcher::Fetch(const FetchRequest& request, const FetchSink& sink) {
  http::DownloadRequest download{.url = request.url, .max_length = request.max_length, .offset = request.offset};
  CITADEL_TRY(auto result, downloader_->Get(download, sink));
  return FetchResult{.bytes_received = result.bytes_received, .resumed = result.resumed};
}

}  // namespace citadel::tuf
