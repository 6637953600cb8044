import IoMTBuffer
import IoMTCore
import IoMTHealthProfiles
import IoMTFHIR
import Logging

/// Turns source readings into durable messages with group commit.
///
/// A reading is *accepted* only once the transaction holding it has committed: `submit`
/// returns after that commit (so a source that awaits it feels back-pressure). Commits are
/// grouped: readings that arrive while a commit is being synced share the next one (at most
/// `maxBatch`), and `maxDelay` (default 0) adds a wait for company before each commit, so
/// throughput does not cost one fsync per reading and an idle gateway adds no latency.
///
/// The ingestor gives each reading its id (UUIDv7) and its per-device sequence number. The
/// sequence counters are loaded from the buffer at start and persisted in the same
/// transaction as the readings, so they continue across restarts; a sequence number is used
/// up even when its reading is lost, so a consumer sees the hole and the gap record names it.
public actor Ingestor: ReadingSink {
    /// The payload format (`output.format`).
    public enum Format: Sendable, Equatable {
        /// `iomt-reading/1` (`schemas/reading.schema.json`).
        case json
        /// FHIR R4 transaction Bundle of PHD-IG Observations.
        case fhir(FHIROptions)

        func render(_ reading: Reading) -> [UInt8] {
            switch self {
            case .json: WireFormat.json(reading)
            case .fhir(let options): FHIRFormat.json(reading, options: options)
            }
        }
    }

    public struct Settings: Sendable {
        public var gatewayID: String
        public var topics: Topics
        public var maxDelay: Duration
        public var maxBatch: Int
        public var format: Format
        /// How the patient is named on the wire (`output.patient_pseudonym_key_file`).
        public var patientReference: PatientReference
        /// `output.units`: convert to these units where a device sent another unit of the same
        /// quantity; empty: never convert.
        public var units: [UCUMUnit]
        public init(gatewayID: String, topics: Topics, maxDelay: Duration, maxBatch: Int, format: Format = .json,
                    patientReference: PatientReference = .identity, units: [UCUMUnit] = []) {
            self.patientReference = patientReference
            self.units = units
            self.gatewayID = gatewayID
            self.topics = topics
            self.maxDelay = maxDelay
            self.maxBatch = max(1, maxBatch)
            self.format = format
        }
    }

    private struct Pending {
        var reading: DeviceReading
        var continuation: CheckedContinuation<IngestOutcome, Never>
    }

    private let store: SQLiteBuffer
    private let settings: Settings
    private let clock: any WallClock
    private let logger: Logger
    private let onCommitted: @Sendable () -> Void
    private var pending: [Pending] = []
    private var wakeCommitter: CheckedContinuation<Void, Never>?
    private var sequences: [String: UInt64]
    private var ids = ReadingIDGenerator()
    private var storageFailing = false
    /// Losses decided here (storage errors) that could not be written yet.
    private var unrecordedLosses: [LostReading] = []
    private var stopped = false
    public private(set) var acceptedCount: UInt64 = 0
    public private(set) var lostCount: UInt64 = 0
    public private(set) var lastReadingAt: [String: Timestamp] = [:]

    public init(store: SQLiteBuffer, settings: Settings, clock: any WallClock = SystemWallClock(),
                logger: Logger, initialSequences: [String: UInt64],
                onCommitted: @escaping @Sendable () -> Void) {
        self.store = store
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.sequences = initialSequences
        self.onCommitted = onCommitted
    }

    public func submit(_ reading: DeviceReading) async -> IngestOutcome {
        await withCheckedContinuation { continuation in
            guard !stopped else {
                // After shutdown began nothing new is accepted; the sequence is not used up.
                continuation.resume(returning: .lost(sequence: 0, reason: .storageError))
                return
            }
            pending.append(Pending(reading: reading, continuation: continuation))
            if let wake = wakeCommitter {
                wakeCommitter = nil
                wake.resume()
            }
        }
    }

    /// The commit loop. Runs until cancelled; then commits what is still pending and returns.
    public func run() async {
        while !Task.isCancelled {
            if pending.isEmpty {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { wakeCommitter = $0 }
                } onCancel: {
                    Task { await self.wakeForShutdown() }
                }
                continue
            }
            if (pending.count < settings.maxBatch) && (settings.maxDelay > .zero) {
                try? await Task.sleep(for: settings.maxDelay)
            }
            await commitBatch()
        }
        stopped = true
        while !pending.isEmpty { await commitBatch() }
    }

    private func wakeForShutdown() {
        if let wake = wakeCommitter {
            wakeCommitter = nil
            wake.resume()
        }
    }

    private func commitBatch() async {
        let take = min(pending.count, settings.maxBatch)
        let batch = Array(pending.prefix(take))
        pending.removeFirst(take)

        var messages: [OutgoingMessage] = []
        messages.reserveCapacity(batch.count)
        var touched: [String: UInt64] = [:]
        for p in batch {
            let deviceID = p.reading.device.id
            let seq = (sequences[deviceID] ?? 0) + 1
            sequences[deviceID] = seq
            touched[deviceID] = seq
            let received = p.reading.receivedAt
            var body = p.reading
            body.patientID = settings.patientReference(body.patientID)
            if !settings.units.isEmpty {
                body.observations = body.observations.map { o in
                    settings.units.first { UnitConversion.convert(1, from: o.unit, to: $0) != nil }
                        .map { UnitConversion.convert(o, to: $0) } ?? o
                }
            }
            let reading = Reading(id: ids.next(at: clock.now()), gatewayID: settings.gatewayID, sequence: seq, body: body)
            messages.append(OutgoingMessage(
                id: reading.id, kind: .reading, topic: settings.topics.readings(deviceID: deviceID),
                payload: settings.format.render(reading), deviceID: deviceID, sequence: seq, priority: 0, createdAt: received,
                sourceCursor: p.reading.sourceCursor))
        }

        do {
            if !unrecordedLosses.isEmpty {
                var highWater: [String: UInt64] = [:]
                for loss in unrecordedLosses { highWater[loss.deviceID] = sequences[loss.deviceID] }
                try await store.recordLosses(unrecordedLosses, sequences: highWater)
                unrecordedLosses.removeAll()
            }
            let result = try await store.append(messages, sequences: touched)
            let rejected = Set(result.rejectedIndices)
            if storageFailing {
                storageFailing = false
                logger.notice("buffer writable again; accepting readings")
            }
            for (i, p) in batch.enumerated() {
                let m = messages[i]
                if rejected.contains(i) {
                    lostCount += 1
                    p.continuation.resume(returning: .lost(sequence: m.sequence ?? 0, reason: .bufferFullRejected))
                } else {
                    acceptedCount += 1
                    lastReadingAt[p.reading.device.id] = p.reading.measuredAt
                    p.continuation.resume(returning: .accepted(id: m.id, sequence: m.sequence ?? 0))
                }
            }
            if rejected.count < batch.count { onCommitted() }
        } catch {
            // Not durable: every reading of this batch is lost, counted, and announced in a gap
            // record as soon as the buffer can be written again.
            if !storageFailing {
                storageFailing = true
                logger.error("buffer cannot store readings; they are counted as lost until it recovers",
                             metadata: ["error": "\(error)"])
            }
            let now = clock.now()
            for (i, p) in batch.enumerated() {
                let m = messages[i]
                lostCount += 1
                unrecordedLosses.append(LostReading(deviceID: p.reading.device.id, sequence: m.sequence ?? 0,
                                                  reason: .storageError, at: now))
                p.continuation.resume(returning: .lost(sequence: m.sequence ?? 0, reason: .storageError))
            }
        }
    }
}
