import IoMTBluetooth
import IoMTBuffer
import IoMTConfig
import IoMTControl
import IoMTCore
import IoMTFHIR
import IoMTRegistry
import IoMTSources
import IoMTUplink
import Logging
import ServiceLifecycle
import UnixSignals

/// The gateway: sources → ingestor (durable, group commit) → buffer → forwarder → MQTT.
///
/// Start-up opens the buffer (moving a corrupt file aside), loads the per-device sequence
/// numbers, connects to the broker and starts the sources. A graceful stop (SIGTERM/SIGINT
/// through ServiceLifecycle, or `exitWhenDrained`) stops the sources, commits what they
/// handed over, gives in-flight publishes a moment to be acknowledged, deletes what was
/// acknowledged, leaves a retained `offline` status and disconnects. Whatever is not
/// acknowledged stays in the buffer for the next start.
public struct Agent: Service {
    public struct Options: Sendable {
        /// Stop once every simulator with a `count` has finished and the buffer is empty.
        public var exitWhenDrained: Bool
        /// How long a stop waits for in-flight publishes to be acknowledged.
        public var drainOnStop: Duration
        public init(exitWhenDrained: Bool = false, drainOnStop: Duration = .seconds(3)) {
            self.exitWhenDrained = exitWhenDrained
            self.drainOnStop = drainOnStop
        }
    }

    public static let version = "0.1.0"

    let config: AgentConfig
    let options: Options
    let logger: Logger
    let clock: any WallClock
    /// The Bluetooth host behind `scan`, `pair` and bond deletion on `discharge`; nil answers
    /// those with "Bluetooth is not configured".
    let bluetooth: (any BluetoothControl)?

    public init(config: AgentConfig, options: Options = Options(), logger: Logger,
                clock: any WallClock = SystemWallClock(), bluetooth: (any BluetoothControl)? = nil) {
        self.config = config
        self.options = options
        self.logger = logger
        self.clock = clock
        self.bluetooth = bluetooth
    }

    public var topics: Topics { Topics(prefix: config.broker.topicPrefix) }

    public func run() async throws {
        let startedAt = clock.now()
        try StateDirectory.prepare(config.stateDir)
        let password = try config.broker.passwordFile.map { path throws(AgentError) in try SecretFile.read(path) }
        // The TLS client key is read by libmosquitto; a key others can read is refused here.
        if let keyFile = config.broker.clientCertificate?.keyFile { _ = try SecretFile.read(keyFile, maxBytes: 1 << 20) }
        let patientReference = try config.output.patientPseudonymKeyFile.map { path throws(AgentError) in
            try PatientReference(keyFile: path)
        } ?? .identity

        // The at-rest key seals the buffer (subkey "buffer") and the bonds (subkey "bonds"); it is
        // loaded before the buffer opens, which refuses a missing or wrong key (issue 8).
        let atRestKey = try AtRestKey.load(config: config, environment: AtRestKey.credentialsEnvironment())
        let buffer: SQLiteBuffer
        do {
            buffer = try await SQLiteBuffer(
                path: config.stateDir + "/buffer.db", maxBytes: config.buffer.maxBytes,
                onFull: config.buffer.onFull == .dropOldest ? .dropOldest : .reject,
                gatewayID: config.gateway.id, gapTopic: topics.gaps, logger: logger,
                sealingKey: atRestKey?.subkey("buffer"))
        } catch {
            throw AgentError("cannot open the buffer: \(error)")
        }
        if let movedTo = buffer.recoveredFromCorruption {
            logger.error("the buffer file was corrupt; it was moved aside and a new one started",
                         metadata: ["moved_to": "\(movedTo)", "salvaged_rows": "\(buffer.salvagedRowCount)"])
        }
        let sequences = try await buffer.loadSequences()

        // Issue 8: the registry and the audit log are sealed under the at-rest key too.
        let registry: DeviceRegistry
        do {
            registry = try DeviceRegistry(stateDir: config.stateDir, clock: clock, sealingKey: atRestKey?.subkey("registry"))
        } catch {
            throw AgentError("cannot open the device registry: \(error)")
        }
        let cursors = (try? await buffer.loadCursors()) ?? [:]
        var sources = makeSources(cursors: cursors)
        // Bluetooth: the configured wearables plus those paired from the CLI (the registry).
        let bluetoothSource = try makeBluetoothSource(config: config, registry: registry, atRestKey: atRestKey, clock: clock, logger: logger,
                                                      cursors: cursors)
        if let bluetoothSource { sources.append(bluetoothSource) }
        let bluetooth: (any BluetoothControl)? = self.bluetooth
            ?? bluetoothSource.map { AgentBluetoothControl(source: $0, registry: registry) }
        let status = StatusReporter(gatewayID: config.gateway.id, version: Agent.version, startedAt: startedAt,
                                    sources: sources, clock: clock)
        let client: MQTTClient
        do {
            let will = LastWill(topic: topics.status, payload: status.offline(reason: "connection-lost"), qos: .atLeastOnce, retain: true)
            client = try MQTTClient(config: uplinkConfig(password: password, will: will))
        } catch {
            throw AgentError("broker configuration: \(error)")
        }

        let forwarder = Forwarder(
            store: buffer, link: client,
            settings: .init(window: config.broker.inflightWindow,
                            qos: config.broker.qos == .exactlyOnce ? .exactlyOnce : .atLeastOnce,
                            order: config.buffer.order == .liveFirst ? .liveFirst(backlogShare: config.buffer.backlogShare) : .fifo,
                            markBacklogInPayload: config.output.format == .json,
                            alertQoS: config.alerts.qos == .exactlyOnce ? .exactlyOnce : .atLeastOnce),
            logger: logger)
        let doorbell = forwarder.doorbell
        let ingestor = Ingestor(
            store: buffer,
            settings: .init(gatewayID: config.gateway.id, topics: topics,
                            maxDelay: .milliseconds(config.buffer.commitMaxDelayMilliseconds),
                            maxBatch: config.buffer.commitMaxBatch,
                            format: config.output.format == .fhir
                                ? .fhir(patientReference.isPseudonymous
                                        ? FHIROptions(patientIdentifierSystem: "urn:iomt-agent:patient-pseudonym") : FHIROptions())
                                : .json,
                            patientReference: patientReference,
                            units: config.output.units.map { UCUMUnit(rawValue: $0) }),
            clock: clock, logger: logger, initialSequences: sequences,
            onCommitted: { doorbell.ring() })

        // Issue 7: the registry binds devices to patients, the audit trail records every change,
        // and the control socket serves the CLI.
        let auditLog = AuditLog(stateDir: config.stateDir, gatewayID: config.gateway.id, clock: clock,
                                sealingKey: atRestKey?.subkey("audit"))
        do { try auditLog.checkKey() } catch { throw AgentError("cannot open the audit log: \(error)") }
        let audit = AuditTrail(log: auditLog,
                               buffer: buffer, topic: topics.audit, logger: logger, patientReference: patientReference,
                               onStored: { doorbell.ring() })
        if let problem = registry.recoveredFromCorruption {
            logger.error("\(problem)")
            try? await audit.record(audit.log.event(.registryRecovered, deviceID: nil, patientBefore: nil, patientAfter: nil,
                                                    actor: .local(via: "agent"), outcome: "failed", detail: problem.description))
        }
        // Issue 9: alerts see readings once accepted (after the patient binding).
        let alerts = config.alerts.enabled
            ? makeAlertService(buffer: buffer, sources: sources, patientReference: patientReference, onStored: { doorbell.ring() })
            : nil
        let sink = PatientBindingSink(next: alerts.map { AlertingSink(next: ingestor, alerts: $0) } ?? ingestor, registry: registry)
        var controlService = ControlService(config: config, buffer: buffer, registry: registry, audit: audit, sources: sources,
                                            live: .init(status: status, ingestor: ingestor, forwarder: forwarder),
                                            bluetooth: bluetooth, clock: clock, logger: logger)
        controlService.alerts = alerts
        let control = ControlServer(
            path: config.control.socket, group: config.control.group,
            handler: controlService,
            logger: logger)
        do {
            if let note = try control.start() { logger.warning("\(note)") }
            logger.info("control socket listening", metadata: ["path": "\(config.control.socket)"])
        } catch {
            // Readings keep flowing without it; only the CLI cannot reach this agent.
            logger.error("control socket not started; the CLI cannot reach this agent", metadata: ["error": "\(error)"])
        }

        // SIGHUP reloads the broker credentials (TLS files, password file) without a restart;
        // trapped before "agent starting" so a supervisor that waits for that line can send it.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let buffered = (try? await buffer.stats().messageCount) ?? 0
        logger.info("agent starting", metadata: [
            "buffered": "\(buffered)",
            "gateway": "\(config.gateway.id)", "version": "\(Agent.version)",
            "brokers": "\(config.broker.endpoints.map(\.description).joined(separator: ","))",
            "sources": "\(sources.count)",
        ])
        let alertsTask = Task { await alerts?.run() }
        alerts?.submit(.brokerLink(connected: false)) // until the first connection
        try client.start()
        let notifier = SystemdNotifier()
        notifier.notify("READY=1\nSTATUS=forwarding from \(sources.count) source(s)")

        let reloads = Task {
            for await _ in hangups { reloadCredentials(client: client) }
        }
        let pump = Task { await forwarder.run() }
        let commits = Task { await ingestor.run() }
        let events = Task {
            await Agent.handleEvents(client: client, forwarder: forwarder, status: status, buffer: buffer,
                                     ingestor: ingestor, topics: topics, qos: config.broker.qos, logger: logger, alerts: alerts)
        }
        let healthSources = sources
        let heartbeat = Task {
            await Agent.publishHealth(every: .seconds(config.broker.statusIntervalSeconds), client: client,
                                      forwarder: forwarder, status: status, buffer: buffer, ingestor: ingestor,
                                      topic: topics.status, alerts: alerts, sources: healthSources)
        }

        // The watchdog is fed through the buffer's thread and the forwarder's actor: if either
        // wedges, the pings stop and systemd restarts the agent (WatchdogSec= in the unit).
        let watchdog = Task {
            guard let interval = notifier.watchdogInterval else { return }
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                _ = await buffer.maxRowID()
                _ = await forwarder.isConnected
                notifier.notify("WATCHDOG=1")
            }
        }

        // Sources run until a graceful shutdown (or, with exitWhenDrained, until done and drained).
        let sourcesTask = Task {
            await withTaskGroup(of: Void.self) { group in
                for source in sources {
                    group.addTask {
                        do { try await source.run(into: sink) } catch is CancellationError {
                        } catch {
                            logger.error("source stopped", metadata: ["source": "\(source.sourceID)", "error": "\(error)"])
                        }
                    }
                }
            }
        }
        let exitWhenDrained = options.exitWhenDrained
        await withTaskGroup(of: Void.self) { waiters in
            waiters.addTask { try? await gracefulShutdown() }
            if exitWhenDrained {
                waiters.addTask {
                    await sourcesTask.value
                    await forwarder.waitUntilIdle()
                }
            }
            await waiters.next()
            waiters.cancelAll()
        }

        logger.info("agent stopping")
        notifier.notify("STOPPING=1")
        await control.stop()
        sourcesTask.cancel()
        await sourcesTask.value
        commits.cancel()
        await commits.value
        alerts?.finish()
        await alertsTask.value
        doorbell.ring()
        if await forwarder.isConnected {
            let drained = Task { await forwarder.waitUntilIdle() }
            let timer = Task {
                try? await Task.sleep(for: options.drainOnStop)
                drained.cancel()
            }
            _ = await withTaskCancellationHandler { await drained.value } onCancel: {}
            timer.cancel()
        }
        reloads.cancel()
        await reloads.value
        heartbeat.cancel()
        await heartbeat.value
        watchdog.cancel()
        await watchdog.value
        await forwarder.flushAcks()
        if await forwarder.isConnected,
           let mid = try? client.publish(topic: topics.status, payload: status.offline(reason: "shutdown"),
                                         qos: .atLeastOnce, retain: true) {
            _ = await forwarder.waitForAcknowledgement(of: mid, timeout: .seconds(2))
        }
        await client.stop()
        await events.value
        doorbell.close()
        await pump.value
        let left = (try? await buffer.stats().messageCount) ?? -1
        await buffer.close()
        logger.info("agent stopped", metadata: ["still_buffered": "\(left)"])
    }

    /// SIGHUP: re-reads the password file (if configured) and the TLS files, then reconnects
    /// with them (``MQTTClient/reloadCredentials(password:)``; nothing buffered or in flight is
    /// lost). All or nothing: any file refused leaves the running connection and the previous
    /// credentials in place. One info line per reload, an error line when refused; never a secret.
    func reloadCredentials(client: MQTTClient) {
        let b = config.broker
        let tls = b.endpoints.first?.tls == true
        guard tls || b.passwordFile != nil else {
            logger.info("SIGHUP: nothing to reload (no TLS and no password file configured)")
            return
        }
        do {
            let password = try b.passwordFile.map { path throws(AgentError) in try SecretFile.read(path) }
            if let keyFile = b.clientCertificate?.keyFile { _ = try SecretFile.read(keyFile, maxBytes: 1 << 20) }
            try client.reloadCredentials(password: password)
            var reloaded: [String] = []
            if tls { reloaded.append("ca_file") }
            if tls && b.clientCertificate != nil { reloaded.append("client_certificate") }
            if b.passwordFile != nil { reloaded.append("password_file") }
            logger.info("SIGHUP: broker credentials reloaded; reconnecting with them",
                        metadata: ["reloaded": "\(reloaded.joined(separator: ","))"])
        } catch {
            logger.error("SIGHUP: broker credentials NOT reloaded; the previous ones stay in use",
                         metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Wiring

    func uplinkConfig(password: String?, will: LastWill) -> UplinkConfig {
        let b = config.broker
        var uplink = UplinkConfig(
            brokers: b.endpoints.map { BrokerAddress(host: $0.host, port: $0.port, tls: $0.tls) },
            clientID: b.clientID,
            protocolVersion: b.protocolVersion == .mqtt311 ? .v311 : .v5,
            username: b.username, password: password,
            caFile: b.caFile, certFile: b.clientCertificate?.certFile, keyFile: b.clientCertificate?.keyFile,
            keepalive: Int32(b.keepAliveSeconds), sessionExpiry: b.sessionExpirySeconds,
            reconnectMinDelay: .milliseconds(b.reconnectMinMilliseconds),
            reconnectMaxDelay: .milliseconds(b.reconnectMaxMilliseconds),
            will: will)
        uplink.batchAcknowledgements = true
        return uplink
    }

    /// Simulators and serial devices, each a `ReadingSource` (Bluetooth: `makeBluetoothSource`).
    func makeSources(cursors: [String: String] = [:]) -> [any ReadingSource] {
        let simulators: [any ReadingSource] = config.simulators.map { sim in
            SimulatorSource(id: sim.id, profile: SimulatedProfile(rawValue: sim.profile.rawValue) ?? .pulseOximeter,
                            patientID: sim.patient, rate: sim.rate, count: sim.count, seed: sim.seed, clock: clock,
                            episode: sim.episode)
        }
        return simulators + makeSerialSources(config: config, clock: clock, logger: logger, cursors: cursors)
    }

    static func handleEvents(client: MQTTClient, forwarder: Forwarder, status: StatusReporter, buffer: SQLiteBuffer,
                             ingestor: Ingestor, topics: Topics, qos: QoS, logger: Logger, alerts: AlertService? = nil) async {
        var everConnected = false
        for await event in client.events {
            switch event {
            case .connected(let broker, let sessionPresent):
                alerts?.submit(.brokerLink(connected: true))
                status.setBroker(broker.description, error: nil)
                // The birth message; the retained Will replaces it if the link dies.
                let health = await status.online(buffer: buffer, ingestor: ingestor)
                _ = try? client.publish(topic: topics.status, payload: health.payload, qos: .atLeastOnce, retain: true)
                await forwarder.handle(.connected(broker: broker.description,
                                                  republishInFlight: everConnected && !sessionPresent && qos == .exactlyOnce))
                everConnected = true
            case .connectionFailed(let broker, let error):
                alerts?.submit(.brokerLink(connected: false))
                status.setBroker(nil, error: error.description)
                logger.warning("cannot connect to the broker; retrying with backoff",
                               metadata: ["broker": "\(broker)", "error": "\(error)"])
            case .disconnected(let error):
                alerts?.submit(.brokerLink(connected: false))
                status.setBroker(nil, error: error?.description)
                await forwarder.handle(.disconnected(reason: error?.description))
            case .acknowledged(let mid, _):
                await forwarder.handle(.acknowledged(mid: mid))
            case .acknowledgedBatch(let mids):
                await forwarder.handle(.acknowledgedBatch(mids))
            case .refused(let mid, let reason):
                await forwarder.handle(.refused(mid: mid, reason: reason.description))
            case .delivered(let tags):
                await forwarder.handle(.delivered(tags))
            case .outboxRefused(let tag, let reason):
                await forwarder.handle(.refusedTag(tag, reason: reason.description))
            }
        }
    }

    static func publishHealth(every interval: Duration, client: MQTTClient, forwarder: Forwarder,
                              status: StatusReporter, buffer: SQLiteBuffer, ingestor: Ingestor, topic: String,
                              alerts: AlertService? = nil, sources: [any ReadingSource] = []) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            if let alerts { await AlertService.feedHealth(alerts, buffer: buffer, sources: sources) }
            // Only while connected: status published offline would queue up in memory.
            guard await forwarder.isConnected else { continue }
            let health = await status.online(buffer: buffer, ingestor: ingestor)
            _ = try? client.publish(topic: topic, payload: health.payload, qos: .atLeastOnce, retain: true)
        }
    }
}
