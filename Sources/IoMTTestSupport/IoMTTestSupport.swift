/// Test helpers for IoMT agent tests: real brokers and real sockets on loopback, no mocks.
///
/// Everything here is bounded in time and cleans up after itself: child processes are stopped
/// by PID (SIGTERM, then SIGKILL) and temp dirs removed when their owner is released; every wait
/// is event-driven (`Watched.wait`, blocking `poll`) with a timeout. Uses only Glibc and
/// libmosquitto (no Foundation).
///
/// - ``MosquittoBroker``: `mosquitto -c` on a free 127.0.0.1 port (plain listener, plus a TLS
///   listener with ``BrokerTLS``), persistence (+ location), password file
///   (`mosquitto_passwd -b`), `allow_anonymous`, debug log, extra config lines (e.g. an
///   `acl_file`); ``MosquittoBroker/stop()``, ``MosquittoBroker/kill9()``,
///   ``MosquittoBroker/restart(timeout:)`` on the SAME port(s), ``MosquittoBroker/waitForLog(_:timeout:)``.
/// - ``TestPKI``: CA, server certificate for `localhost` + `127.0.0.1`, client certificate,
///   expired server certificate, wrong-host server certificate, unrelated CA (openssl CLI).
/// - ``MQTTTestSubscriber``: MQTT 5 subscriber recording topic, payload, QoS, retain and user
///   properties; ``MQTTTestSubscriber/waitFor(count:timeout:)``, `waitUntil`, persistent session.
/// - ``TCPProxy``: relay in front of a broker to cut connections (RST, no DISCONNECT: the broker
///   publishes the Will) or black-hole one direction (``TCPProxy/freeze(_:)``).
/// - ``TCPBlackHole``: a port whose SYNs are never answered (connect hangs).
/// - ``ChildProcess``, ``TempDir``, ``freeLoopbackPort()``, ``Watched``.
///
/// Typical use (always stop what you start, also on failure):
/// ```swift
/// let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
/// let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "iomt/#")
/// defer { sub.stop(); broker.killNow() }
/// // ... run the agent against broker.url ...
/// #expect(await sub.waitUntil { Set($0.map(\.payloadString)).isSuperset(of: expected) })
/// await broker.stop()
/// ```
///
/// Limitation: if the test process itself crashes (a trap), a running `mosquitto` survives it
/// (there is no portable parent-death signal with `posix_spawn`); its temp dir names start with
/// `/tmp/iomt-mosquitto-`.
public enum IoMTTestSupport {}
