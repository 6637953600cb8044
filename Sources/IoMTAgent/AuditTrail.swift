import IoMTBuffer
import IoMTCore
import IoMTRegistry
import Logging

extension Topics {
    /// `<prefix>/audit`: one `iomt-audit/1` message per change to pairing, patient binding or
    /// the buffer (`schemas/audit.schema.json`), QoS `broker.qos`, not retained.
    public var audit: String { "\(prefix)/audit" }
}

/// Writes every audit event twice: to `state_dir/audit.jsonl` (fsynced first: the record of
/// truth) and into the durable buffer as a message on `<prefix>/audit`, which the forwarder
/// publishes like a gap record and deletes only once the broker acknowledged it.
public struct AuditTrail: Sendable {
    /// Audit messages go ahead of readings, after gap records.
    public static let priority: UInt8 = 200

    public let log: AuditLog
    let buffer: SQLiteBuffer
    let topic: String
    let logger: Logger
    let onStored: @Sendable () -> Void
    /// How the broker copy names patients (the audit file keeps the real ids).
    let patientReference: PatientReference

    public init(log: AuditLog, buffer: SQLiteBuffer, topic: String, logger: Logger,
                patientReference: PatientReference = .identity, onStored: @escaping @Sendable () -> Void = {}) {
        self.patientReference = patientReference
        self.log = log
        self.buffer = buffer
        self.topic = topic
        self.logger = logger
        self.onStored = onStored
    }

    /// Records the event. Throws if the audit file cannot be written (the change must then be
    /// reported as not audited); a failure to queue it for the broker is logged, the file keeps it.
    public func record(_ event: AuditEvent) async throws(FileError) {
        try log.append(event)
        var wire = event
        wire.patientBefore = wire.patientBefore.map { patientReference($0) }
        wire.patientAfter = wire.patientAfter.map { patientReference($0) }
        let message = OutgoingMessage(id: event.id, kind: .event, topic: topic, payload: wire.json(gatewayID: log.gatewayID),
                                      deviceID: nil, sequence: nil, priority: AuditTrail.priority, createdAt: event.at)
        do {
            let outcome = try await buffer.append([message])
            if outcome.storedCount == 1 {
                onStored()
            } else {
                logger.error("audit event not queued for the broker (buffer full); it is in the audit file",
                             metadata: ["audit_id": "\(event.id)", "file": "\(log.path)"])
            }
        } catch {
            logger.error("audit event not queued for the broker; it is in the audit file",
                         metadata: ["audit_id": "\(event.id)", "error": "\(error)", "file": "\(log.path)"])
        }
        logger.notice("audit", metadata: ["action": "\(event.action.rawValue)", "device": "\(event.deviceID ?? "-")",
                                          "outcome": "\(event.outcome)", "uid": "\(event.actor.uid)"])
    }
}

/// Gives each reading the patient the registry binds its device to (set by `pair` or
/// `assign`); devices without a registry entry keep the patient their configuration names.
public struct PatientBindingSink: ReadingSink {
    let next: any ReadingSink
    let registry: DeviceRegistry

    public init(next: any ReadingSink, registry: DeviceRegistry) {
        self.next = next
        self.registry = registry
    }

    public func submit(_ reading: DeviceReading) async -> IngestOutcome {
        var r = reading
        if let patient = registry.patient(of: reading.device.id) { r.patientID = patient }
        return await next.submit(r)
    }
}
