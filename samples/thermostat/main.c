/*
 * thermostat: reads the TMP102 temperature sensor at 0x48 on I2C0 every
 * --interval seconds and publishes each reading as JSON
 *   {"device":"<device id>","celsius":21.5,"seq":n}
 * to an MQTT broker over TLS, authenticating with the DEVICE certificate.
 *
 * Security contract: the app never sees the device's private key. The TLS
 * context is built here with OpenSSL; DeviceAuth_SslCtxConfigure() makes it
 * present the device certificate chain and sign the handshake through the
 * runtime (manifest capability DeviceAuthentication). The broker is
 * verified against the CA file shipped inside the signed image (--ca,
 * default /app/etc/broker-ca.pem), including its name or IP address. The
 * only network peer the manifest allows is the broker host
 * (AllowedConnections); the runtime refuses every other connect().
 *
 * Each connection attempt builds a fresh SSL_CTX and mosquitto client, so a
 * renewed device certificate is picked up on the next reconnect and a
 * broken session leaves nothing behind. Failed attempts back off
 * exponentially (1 s doubling to 60 s).
 *
 * Options (CmdArgs): --broker-host HOST (required), --broker-port N (8883),
 * --topic T (devices/<device>/temperature), --interval S (10),
 * --ca FILE (/app/etc/broker-ca.pem), --count N (exit after N publishes;
 * 0 = run until SIGTERM).
 *
 * Single-threaded: libmosquitto is driven with mosquitto_loop() from main.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <applibs/applibs.h>

enum {
  kTmp102Address = 0x48,
  kTmp102TemperatureRegister = 0x00,
  kKeepAliveSeconds = 30,
  kLoopTimeoutMs = 100,
  kMinBackoffMs = 1000,
  kMaxBackoffMs = 60000,
};

struct Options {
  const char* broker_host;
  int broker_port;
  const char* topic; /* NULL: devices/<device>/temperature */
  long interval_seconds;
  const char* ca_file;
  long count;
};

struct Session {
  struct mosquitto* client;
  bool connected;    /* CONNACK accepted and not yet disconnected */
  bool failed;       /* refused or lost: tear down and back off */
  long acknowledged; /* QoS 1 PUBACKs received, over all connections */
};

static volatile sig_atomic_t stop_requested = 0;

static void OnTerminate(int signal_number) {
  (void)signal_number;
  stop_requested = 1;
}

static int64_t NowMs(void) {
  struct timespec now;
  (void)clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void SleepMs(long milliseconds) {
  struct timespec duration = {.tv_sec = milliseconds / 1000, .tv_nsec = (milliseconds % 1000) * 1000000L};
  (void)clock_nanosleep(CLOCK_MONOTONIC, 0, &duration, NULL);
}

static long ParseBounded(const char* text, long minimum, long maximum) {
  char* end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < minimum || value > maximum) return -1;
  return value;
}

static int ParseOptions(int argc, char** argv, struct Options* options) {
  options->broker_host = NULL;
  options->broker_port = 8883;
  options->topic = NULL;
  options->interval_seconds = 10;
  options->ca_file = "/app/etc/broker-ca.pem";
  options->count = 0;
  for (int i = 1; i < argc; ++i) {
    const char* name = argv[i];
    if (i + 1 >= argc) {
      Log_Debug("thermostat: %s needs a value", name);
      return -1;
    }
    const char* value = argv[++i];
    long number = 0;
    if (strcmp(name, "--broker-host") == 0) {
      options->broker_host = value;
    } else if (strcmp(name, "--broker-port") == 0) {
      if ((number = ParseBounded(value, 1, 65535)) < 0) goto bad_value;
      options->broker_port = (int)number;
    } else if (strcmp(name, "--topic") == 0) {
      options->topic = value;
    } else if (strcmp(name, "--interval") == 0) {
      if ((options->interval_seconds = ParseBounded(value, 1, 86400)) < 0) goto bad_value;
    } else if (strcmp(name, "--ca") == 0) {
      options->ca_file = value;
    } else if (strcmp(name, "--count") == 0) {
      if ((options->count = ParseBounded(value, 0, 1000000000L)) < 0) goto bad_value;
    } else {
      Log_Debug("thermostat: unknown option %s (see the comment at the top of thermostat/main.c)", name);
      return -1;
    }
    continue;
  bad_value:
    Log_Debug("thermostat: bad value \"%s\" for %s", value, name);
    return -1;
  }
  if (options->broker_host == NULL || options->broker_host[0] == '\0') {
    Log_Debug("thermostat: --broker-host is required (a host listed in AllowedConnections)");
    return -1;
  }
  return 0;
}

/* Reads the TMP102 temperature register: 12-bit two's complement, left
 * aligned in two bytes, 0.0625 C per LSB. */
static int ReadTemperature(int i2c, double* out_celsius) {
  const uint8_t reg = kTmp102TemperatureRegister;
  uint8_t raw[2] = {0, 0};
  ssize_t transferred = I2CMaster_WriteThenRead(i2c, kTmp102Address, &reg, sizeof reg, raw, sizeof raw);
  if (transferred < 0) return -1;
  if (transferred != (ssize_t)(sizeof reg + sizeof raw)) {
    errno = EIO;
    return -1;
  }
  int value = (raw[0] << 4) | (raw[1] >> 4);
  if (value & 0x800) value -= 0x1000; /* sign-extend the 12-bit value */
  *out_celsius = value * 0.0625;
  return 0;
}

static void LogTlsErrors(const char* what) {
  unsigned long error = ERR_get_error();
  if (error == 0) {
    Log_Debug("thermostat: %s failed", what);
    return;
  }
  for (; error != 0; error = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(error, text, sizeof text);
    Log_Debug("thermostat: %s: %s", what, text);
  }
}

/* The device id, from the device certificate's common name; only the
 * characters a topic and a JSON string can hold unescaped are kept. */
static int ReadDeviceName(char* out, size_t out_size) {
  size_t length = 0;
  if (DeviceAuth_GetCertificateChainPem(NULL, &length) != 0 || length == 0) return -1;
  char* pem = malloc(length);
  if (pem == NULL) return -1;
  int result = -1;
  if (DeviceAuth_GetCertificateChainPem(pem, &length) == 0) {
    BIO* bio = BIO_new_mem_buf(pem, -1);
    X509* leaf = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    char common_name[256] = "";
    if (leaf != NULL &&
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, common_name, sizeof common_name) > 0) {
      size_t used = 0;
      for (const char* c = common_name; *c != '\0' && used + 1 < out_size; ++c) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                     *c == '_' || *c == '.';
        out[used++] = plain ? *c : '_';
      }
      out[used] = '\0';
      result = used > 0 ? 0 : -1;
    }
    X509_free(leaf);
    BIO_free(bio);
  }
  free(pem);
  return result;
}

/* A client TLS context: TLS >= 1.2, the broker verified against the image's
 * CA file and its host name or IP, the device certificate presented through
 * the runtime. NULL on failure (logged). */
static SSL_CTX* CreateTlsContext(const struct Options* options) {
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  if (context == NULL) {
    LogTlsErrors("creating the TLS context");
    return NULL;
  }
  if (SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) != 1) {
    LogTlsErrors("setting TLS >= 1.2");
    goto fail;
  }
  if (SSL_CTX_load_verify_locations(context, options->ca_file, NULL) != 1) {
    LogTlsErrors("loading the broker CA");
    Log_Debug("thermostat: the broker CA must be a PEM file inside the image (--ca %s)", options->ca_file);
    goto fail;
  }
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
  X509_VERIFY_PARAM* parameters = SSL_CTX_get0_param(context);
  struct in6_addr address;
  bool is_ip = inet_pton(AF_INET, options->broker_host, &address) == 1 ||
               inet_pton(AF_INET6, options->broker_host, &address) == 1;
  int name_set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(parameters, options->broker_host)
                       : X509_VERIFY_PARAM_set1_host(parameters, options->broker_host, 0);
  if (name_set != 1) {
    LogTlsErrors("setting the broker name to verify");
    goto fail;
  }
  if (DeviceAuth_SslCtxConfigure(context) != 0) {
    Log_Debug("thermostat: DeviceAuth_SslCtxConfigure failed: %s%s", strerror(errno),
              errno == EACCES   ? " (the manifest needs DeviceAuthentication)"
              : errno == EAGAIN ? " (the device has no certificate yet; retrying)"
                                : "");
    goto fail;
  }
  return context;
fail:
  SSL_CTX_free(context);
  return NULL;
}

static void OnConnect(struct mosquitto* client, void* user_data, int result) {
  (void)client;
  struct Session* session = user_data;
  if (result == 0) {
    session->connected = true;
    Log_Debug("thermostat: connected to the broker");
  } else {
    session->failed = true;
    Log_Debug("thermostat: the broker refused the connection: %s", mosquitto_connack_string(result));
  }
}

static void OnDisconnect(struct mosquitto* client, void* user_data, int result) {
  (void)client;
  struct Session* session = user_data;
  session->connected = false;
  session->failed = true;
  Log_Debug("thermostat: disconnected from the broker (%s)", result == 0 ? "requested" : mosquitto_strerror(result));
}

static void OnPublish(struct mosquitto* client, void* user_data, int message_id) {
  (void)client;
  struct Session* session = user_data;
  ++session->acknowledged;
  Log_Debug("thermostat: broker acknowledged message %d", message_id);
}

/* libmosquitto's own errors (e.g. why a TLS handshake failed). */
static void OnLibraryLog(struct mosquitto* client, void* user_data, int level, const char* text) {
  (void)client;
  (void)user_data;
  if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)) Log_Debug("thermostat: libmosquitto: %s", text);
}

static void EndSession(struct Session* session) {
  if (session->client == NULL) return;
  if (session->connected) {
    (void)mosquitto_disconnect(session->client);
    (void)mosquitto_loop(session->client, kLoopTimeoutMs, 1);
  }
  mosquitto_destroy(session->client);
  session->client = NULL;
  session->connected = false;
  session->failed = false;
}

/* Starts one connection: fresh TLS context and client, TCP + TLS handshake
 * and CONNECT sent (CONNACK arrives in OnConnect). */
static int BeginSession(struct Session* session, const struct Options* options, const char* client_id) {
  bool ready = false;
  if (Networking_IsNetworkingReady(&ready) != 0 || !ready) {
    Log_Debug("thermostat: networking is not ready");
    return -1;
  }
  SSL_CTX* context = CreateTlsContext(options);
  if (context == NULL) return -1;
  session->client = mosquitto_new(client_id, true, session);
  if (session->client == NULL) {
    Log_Debug("thermostat: mosquitto_new failed: %s", strerror(errno));
    SSL_CTX_free(context);
    return -1;
  }
  mosquitto_connect_callback_set(session->client, OnConnect);
  mosquitto_disconnect_callback_set(session->client, OnDisconnect);
  mosquitto_publish_callback_set(session->client, OnPublish);
  mosquitto_log_callback_set(session->client, OnLibraryLog);
  int rc = mosquitto_int_option(session->client, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  /* The client takes its own reference to the context; ours is dropped
   * right away. WITH_DEFAULTS 0: libmosquitto must not touch our
   * verification settings (it would want a cafile of its own). */
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_void_option(session->client, MOSQ_OPT_SSL_CTX, context);
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_int_option(session->client, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
  SSL_CTX_free(context);
  if (rc != MOSQ_ERR_SUCCESS) {
    Log_Debug("thermostat: configuring the MQTT client failed: %s", mosquitto_strerror(rc));
    EndSession(session);
    return -1;
  }
  Log_Debug("thermostat: connecting to %s:%d", options->broker_host, options->broker_port);
  rc = mosquitto_connect(session->client, options->broker_host, options->broker_port, kKeepAliveSeconds);
  if (rc != MOSQ_ERR_SUCCESS) {
    Log_Debug("thermostat: connecting to %s:%d failed: %s", options->broker_host, options->broker_port,
              rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    EndSession(session);
    return -1;
  }
  return 0;
}

static int Publish(struct Session* session, const char* topic, const char* device, double celsius, long seq) {
  char payload[256];
  int length =
      snprintf(payload, sizeof payload, "{\"device\":\"%s\",\"celsius\":%.4f,\"seq\":%ld}", device, celsius, seq);
  if (length < 0 || (size_t)length >= sizeof payload) return -1;
  int message_id = 0;
  int rc = mosquitto_publish(session->client, &message_id, topic, length, payload, 1, false);
  if (rc != MOSQ_ERR_SUCCESS) {
    Log_Debug("thermostat: publish of seq %ld failed: %s", seq, mosquitto_strerror(rc));
    return -1;
  }
  Log_Debug("thermostat: published seq %ld (%.4f C) to %s as message %d", seq, celsius, topic, message_id);
  return 0;
}

int main(int argc, char** argv) {
  struct Options options;
  if (ParseOptions(argc, argv, &options) != 0) return 2;

  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = OnTerminate;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGTERM, &action, NULL) != 0 || sigaction(SIGINT, &action, NULL) != 0) {
    Log_Debug("thermostat: cannot install the SIGTERM handler: %s", strerror(errno));
    return 1;
  }
  /* A broker closing the socket must not kill us with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);

  int i2c = I2CMaster_Open("I2C0");
  if (i2c < 0) {
    Log_Debug("thermostat: cannot open I2C0: %s (does the manifest list I2cMaster \"I2C0\"?)", strerror(errno));
    return 1;
  }

  char device[128] = "unknown-device";
  if (ReadDeviceName(device, sizeof device) != 0)
    Log_Debug("thermostat: the device certificate has no readable name yet (%s); using \"%s\"", strerror(errno),
              device);
  char topic[512];
  if (options.topic != NULL) {
    snprintf(topic, sizeof topic, "%s", options.topic);
  } else {
    snprintf(topic, sizeof topic, "devices/%s/temperature", device);
  }
  char client_id[160];
  snprintf(client_id, sizeof client_id, "thermostat-%s", device);

  if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS) {
    Log_Debug("thermostat: mosquitto_lib_init failed");
    return 1;
  }
  Log_Debug("thermostat: started; reading I2C0 0x48 every %ld s, publishing to %s on %s:%d", options.interval_seconds,
            topic, options.broker_host, options.broker_port);

  struct Session session = {.client = NULL, .connected = false, .failed = false, .acknowledged = 0};
  long backoff_ms = kMinBackoffMs;
  int64_t next_connect_ms = NowMs();
  int64_t next_reading_ms = NowMs();
  long seq = 0;
  long published = 0;
  while (!stop_requested && (options.count == 0 || published < options.count)) {
    int64_t now = NowMs();
    if (session.client == NULL && now >= next_connect_ms) {
      if (BeginSession(&session, &options, client_id) != 0) {
        Log_Debug("thermostat: retrying in %ld ms", backoff_ms);
        next_connect_ms = now + backoff_ms;
        backoff_ms = backoff_ms * 2 > kMaxBackoffMs ? kMaxBackoffMs : backoff_ms * 2;
      }
    }
    if (session.client != NULL) {
      int rc = mosquitto_loop(session.client, kLoopTimeoutMs, 1);
      if (rc != MOSQ_ERR_SUCCESS && !(rc == MOSQ_ERR_ERRNO && errno == EINTR)) {
        Log_Debug("thermostat: connection lost: %s", rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        session.failed = true;
      }
      if (session.failed) {
        EndSession(&session);
        Log_Debug("thermostat: reconnecting in %ld ms", backoff_ms);
        next_connect_ms = NowMs() + backoff_ms;
        backoff_ms = backoff_ms * 2 > kMaxBackoffMs ? kMaxBackoffMs : backoff_ms * 2;
      } else if (session.connected) {
        backoff_ms = kMinBackoffMs;
      }
    } else {
      SleepMs(kLoopTimeoutMs);
    }

    /* A reading waits up to a second for a connection being set up. */
    now = NowMs();
    if (now >= next_reading_ms && (session.connected || session.client == NULL || now >= next_reading_ms + 1000)) {
      next_reading_ms += options.interval_seconds * 1000;
      double celsius = 0;
      if (ReadTemperature(i2c, &celsius) != 0) {
        Log_Debug("thermostat: reading the TMP102 failed: %s", strerror(errno));
      } else if (!session.connected) {
        Log_Debug("thermostat: %.4f C not published (not connected)", celsius);
      } else if (Publish(&session, topic, device, celsius, ++seq) == 0) {
        ++published;
      }
    }
  }

  /* Wait (bounded, 2 s) for the broker to acknowledge what was published. */
  for (int i = 0; i < 20 && session.connected && session.acknowledged < published; ++i)
    (void)mosquitto_loop(session.client, kLoopTimeoutMs, 1);
  EndSession(&session);
  mosquitto_lib_cleanup();
  (void)close(i2c);
  Log_Debug("thermostat: %s after %ld publishes", stop_requested ? "stopped by signal" : "finished", published);
  return 0;
}
