// Internal to Citadel's HTTPS code: OpenSSL context settings shared by the
// server, the client and citadel-sim's asynchronous client (src/sim). Plain OpenSSL, so these functions can be reasoned
// about (and reviewed) without reading Asio.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>

#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "http/http.hpp"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace citadel::http::internal {

// TLS 1.2 minimum, no compression, no renegotiation.
[[nodiscard]] Expected<void> ApplyBaseSettings(SSL_CTX* context);

// Installs the certificate chain (leaf first) and its private key; fails
// when the key does not match the leaf.
[[nodiscard]] Expected<void> UseIdentity(SSL_CTX* context, const TlsIdentity& identity);

// Server side: ask for a client certificate without requiring one, accept
// whatever chain is presented (the handler verifies it against the tenant
// CA), and turn session resumption off so every connection carries the full
// peer chain.
void RequestUnverifiedClientCertificates(SSL_CTX* context);

// Client side: trust exactly the CA certificates in ca_pem (no system
// store) and require the server to chain to them.
[[nodiscard]] Expected<void> PinCertificateAuthorities(SSL_CTX* context, std::string_view ca_pem);

// Client side, per connection: the server certificate must name host (a DNS
// name, or an IP address matched against the IP SANs); sends SNI for names.
[[nodiscard]] Expected<void> ExpectServerIdentity(SSL* ssl, const std::string& host);

// The peer's certificate chain as presented, leaf first (at most 16).
std::vector<crypto::Certificate> PeerChain(SSL* ssl);

// Why certificate verification failed on ssl, or "" when it did not.
std::string VerifyFailure(SSL* ssl);

// True for the ways a peer that closed a kept-alive connection shows up
// (EOF, reset, a TLS close without close_notify); only these make a request
// on a reused connection worth sending again.
bool IsConnectionClosed(const boost::system::error_code& ec);

// Drains OpenSSL's error queue into one line.
std::string TakeOpenSslErrors();

}  // namespace citadel::http::internal
