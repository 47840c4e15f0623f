/*
 * applibs: the only way a Citadel app reaches the device (C ABI, usable from
 * C and C++; link with -lapplibs). Modelled on Azure Sphere's applibs.
 *
 * Every peripheral is named as the board definition names it ("LED1",
 * "I2C0"); the app's manifest must list the name under the matching
 * capability. The runtime (citadeld) holds the hardware: a call asks the
 * runtime over the app's broker channel (fd 3, set up by the sandbox) and
 * gets back a descriptor or a result only for what the manifest lists.
 *
 * Conventions: functions return 0 (or a descriptor >= 0, or a byte count) on
 * success and -1 with errno set on failure:
 *   EACCES  the manifest does not grant it (the runtime also records a
 *           policy violation)
 *   ENOENT  the board has no peripheral of that name
 *   EBUSY   another open descriptor holds it in this app
 *   EINVAL  a bad argument
 *   EIO     the runtime or the peripheral failed
 *   ENOTCONN the broker channel is missing (not running under citadeld)
 * Descriptors are closed with close(2).
 *
 * Threading: every function may be called from any thread; calls on the
 * broker channel are serialised inside the library.
 */
#ifndef CITADEL_APPLIBS_APPLIBS_H_
#define CITADEL_APPLIBS_APPLIBS_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's API version; bumped on incompatible changes. */
#define APPLIBS_API_VERSION 1

/* ---- Log ---------------------------------------------------------------
 * A line on the app's log (stderr), kept by the runtime in the app's log
 * ring (`citadel device app logs`). Never fails visibly. */
void Log_Debug(const char* format, ...) __attribute__((format(printf, 1, 2)));

/* ---- GPIO (capability Gpio) -------------------------------------------- */
typedef int GPIO_Value_Type;
#define GPIO_Value_Low 0
#define GPIO_Value_High 1

int GPIO_OpenAsOutput(const char* name, GPIO_Value_Type initial_value);
int GPIO_OpenAsInput(const char* name);
int GPIO_SetValue(int fd, GPIO_Value_Type value);
int GPIO_GetValue(int fd, GPIO_Value_Type* out_value);

/* ---- UART (capability Uart) --------------------------------------------
 * The descriptor is a byte stream: read(2)/write(2) it. */
int UART_Open(const char* name);

/* ---- I2C master (capability I2cMaster) ---------------------------------
 * address: 7-bit bus address. Return the number of bytes transferred. */
int I2CMaster_Open(const char* name);
ssize_t I2CMaster_Write(int fd, uint16_t address, const uint8_t* data, size_t length);
ssize_t I2CMaster_Read(int fd, uint16_t address, uint8_t* buffer, size_t length);
/* Write then read in one bus transaction (repeated start). Returns the
 * total bytes transferred. */
ssize_t I2CMaster_WriteThenRead(int fd, uint16_t address, const uint8_t* write_data, size_t write_length,
                                uint8_t* read_data, size_t read_length);

/* ---- SPI master (capability SpiMaster) ---------------------------------
 * Full duplex: sends tx and fills rx (either may be NULL), length bytes. */
int SPIMaster_Open(const char* name);
ssize_t SPIMaster_Transfer(int fd, const uint8_t* tx, uint8_t* rx, size_t length);

/* ---- PWM (capability Pwm) ---------------------------------------------- */
int PWM_Open(const char* name);
int PWM_Apply(int fd, uint32_t period_ns, uint32_t duty_cycle_ns, bool enabled);

/* ---- ADC (capability Adc) ---------------------------------------------- */
int ADC_Open(const char* name);
int ADC_GetSample(int fd, uint32_t* out_sample);
/* Bits per sample (e.g. 12). */
int ADC_GetSampleBitCount(int fd);

/* ---- Storage (capability MutableStorage) -------------------------------
 * The app's mutable storage is a directory (mounted at
 * Storage_GetMutableDirectory()) with the manifest's quota; writes past it
 * fail with ENOSPC. Storage_OpenMutableFile opens (creating) the
 * conventional file "mutable" in it, O_RDWR. Without the capability both
 * fail with EACCES / return NULL. */
const char* Storage_GetMutableDirectory(void);
int Storage_OpenMutableFile(void);
int Storage_DeleteMutableFile(void);

/* ---- Networking --------------------------------------------------------
 * Whether the device has network connectivity the app may use (false when
 * the manifest grants no AllowedConnections / server ports). Connections
 * themselves are ordinary sockets; the runtime checks each connect() and
 * bind() against the manifest (others fail with EACCES) and resolves the
 * host names the manifest lists (other names do not resolve). */
int Networking_IsNetworkingReady(bool* out_ready);

/* ---- Device authentication (capability DeviceAuthentication) -----------
 * The device certificate chain (leaf then issuing CA, PEM). With buffer ==
 * NULL or *length too small, sets *length to the size needed (including the
 * terminating NUL) and fails with ERANGE (buffer given) or returns 0
 * (buffer NULL). */
int DeviceAuth_GetCertificateChainPem(char* buffer, size_t* length);
/* ECDSA P-256 signature (DER) by the device's TLS key over a SHA-256
 * digest. The key never leaves the runtime. *signature_length: in, the
 * buffer size (72 bytes is always enough); out, the signature size. */
int DeviceAuth_SignDigest(const uint8_t digest[32], uint8_t* signature, size_t* signature_length);
/* Configures an OpenSSL SSL_CTX (pass an SSL_CTX*) to present the device
 * certificate chain and sign the TLS handshake through the runtime, for a
 * TLS client connection (e.g. MQTT to a broker that trusts the tenant CA).
 * Needs -lssl -lcrypto in the app. */
int DeviceAuth_SslCtxConfigure(void* ssl_ctx);

/* ---- Application connections (AllowedApplicationConnections) -----------
 * A connected stream socket to the running app with that component id;
 * both manifests must list each other. The peer receives the other end
 * from Application_Accept. ECONNREFUSED when the peer is not running. */
int Application_Connect(const char* component_id);
/* Waits up to timeout_ms (-1: forever) for an incoming connection; returns
 * the socket, or -1 with ETIMEDOUT. */
int Application_Accept(int timeout_ms);

/* ---- Power controls (capability PowerControls) ------------------------- */
int PowerManagement_ForceSystemReboot(void);

/* ---- System time (capability SystemTime) ------------------------------- */
int Clock_SetSystemTime(const struct timespec* new_time);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CITADEL_APPLIBS_APPLIBS_H_ */
