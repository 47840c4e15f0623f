// A virtual device's TUF client over its asynchronous connection: the
// refresh of one repository (director or image repository) verified step by
// step by tuf::TrustedMetadataSet — the same checks tuf::Updater applies on
// a real device — with nothing written to disk. The device keeps only the
// newest trusted root in memory between refreshes (trust on first use of
// 1.root.json, like update::UpdateClient without a factory root).
//
// The service's repositories do not delegate (server/repository.cpp refuses
// delegations), so the top-level targets are the whole picture.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it

#include <boost/asio/awaitable.hpp>

#include "common/error.hpp"
#include "tuf/metadata.hpp"
#include "tuf/trusted_set.hpp"

namespace citadel::sim {

// GETs `path` (absolute on the service), at most max_length bytes. kNotFound
// for 403/404 (the root walk stops on it); other failures as they are.
using FetchFile =
    std::function<boost::asio::awaitable<Expected<std::string>>(std::string path, std::uint64_t max_length)>;

struct RepositoryTrust {
  std::string root;  // the newest trusted root.json bytes; empty before the first refresh
};

// Bounds (as tuf::UpdaterConfig's defaults).
inline constexpr std::uint64_t kRootMaxLength = 512000;
inline constexpr std::uint64_t kTimestampMaxLength = 16384;
inline constexpr std::uint64_t kSnapshotMaxLength = 2000000;
inline constexpr std::uint64_t kTargetsMaxLength = 5000000;
inline constexpr std::int64_t kMaxRootRotations = 256;

// Spec 5.2-5.6 against `base` ("/v1/repo/T/image"): root walk, timestamp,
// snapshot, targets, each fetched and handed to the trusted set; the
// reference time is the device's clock (skewed, when asked).
boost::asio::awaitable<Expected<tuf::TrustedMetadataSet>> RefreshRepository(const FetchFile& fetch,
                                                                            const std::string& base,
                                                                            RepositoryTrust& trust,
                                                                            std::int64_t reference_time);

// Where the image repository serves a target: BASE/targets/<dir>/<sha256>.<name>
// with consistent snapshots (as tuf::Updater fetches it), each segment
// percent-encoded.
std::string TargetPath(const std::string& image_base, const tuf::TargetFile& target, bool consistent_snapshot);

}  // namespace citadel::sim
