import IoMTCore
import IoMTHCI
import IoMTATT
import IoMTSMP
import Logging

/// What the host hands a link, in the order the controller delivered it.
enum LinkInput: Sendable {
    case l2cap(channel: UInt16, payload: [UInt8])
    case encryptionChanged(status: HCIStatus, enabled: Bool, keySize: UInt8?)
    case disconnected(HCIStatus)
    case tick
}

/// What a link tells its owner (the device session).
public enum LinkEvent: Sendable, Hashable {
    case notification(handle: UInt16, value: [UInt8])
    case indication(handle: UInt16, value: [UInt8])
    /// The peripheral asked for security (SMP Security Request, Core v5.4 Vol 3 Part H 3.6.7).
    case securityRequested
    /// The peer's database changed in this handle range (Service Changed, Vol 3 Part G 7.1).
    case serviceChanged(start: UInt16, end: UInt16)
    case disconnected(HCIStatus)
}

/// Errors of link procedures, specific enough for the CLI to say what happened.
public enum LinkError: Error, Sendable, CustomStringConvertible, Equatable {
    case gatt(GATTError)
    case pairing(PairingFailure)
    case encryptionFailed(HCIStatus)
    case host(BluetoothHostError)
    case disconnected(HCIStatus)
    case busy(String)

    public var description: String {
        switch self {
        case .gatt(let e): return "GATT: \(e)"
        case .pairing(let f): return "pairing failed: \(f.description)"
        case .encryptionFailed(let s): return "encryption failed: \(s) (the device may have lost its bond: pair it again)"
        case .host(let e): return e.description
        case .disconnected(let s): return "the link went down: \(s)"
        case .busy(let m): return m
        }
    }
}

/// Answers the questions pairing may ask (Core v5.4 Vol 3 Part H 2.3.5.1).
public struct PairingDelegate: Sendable {
    public var ioCapability: IOCapability
    /// Asked for the 6-digit passkey the device displays (nil aborts pairing).
    public var passkey: @Sendable () async -> UInt32?
    /// Shown a passkey to type on the device.
    public var display: @Sendable (UInt32) async -> Void
    /// Asked to confirm that the device shows the same 6 digits.
    public var confirm: @Sendable (UInt32) async -> Bool

    public init(ioCapability: IOCapability,
                passkey: @escaping @Sendable () async -> UInt32? = { nil },
                display: @escaping @Sendable (UInt32) async -> Void = { _ in },
                confirm: @escaping @Sendable (UInt32) async -> Bool = { _ in false }) {
        self.ioCapability = ioCapability
        self.passkey = passkey
        self.display = display
        self.confirm = confirm
    }

    /// Just Works: no input, no output.
    public static let justWorks = PairingDelegate(ioCapability: .noInputNoOutput)
}

/// One LE connection: its ATT bearer (GATT client), LE signalling and SMP. One actor per link,
/// so a misbehaving wearable costs its own link, never the host.
public actor LELink {
    public nonisolated let handle: ConnectionHandle
    public nonisolated let peer: LEAddress
    public nonisolated let local: LEAddress
    /// Link events for the one consumer that owns this link.
    public nonisolated let events: AsyncStream<LinkEvent>
    nonisolated let inbox: AsyncStream<LinkInput>.Continuation
    private let eventSink: AsyncStream<LinkEvent>.Continuation
    private weak var host: BluetoothHost?
    /// Links share their host's serial executor: the host hands them controller input with a
    /// plain call (no task hop per packet), while each link keeps its own isolated state.
    private nonisolated let executorHost: BluetoothHost
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executorHost.unownedExecutor }
    private let logger: Logger

    private var gatt = GATTClient()
    private var signalling = LESignallingResponder()
    private var smp: PairingInitiator?
    private var smpDelegate: PairingDelegate?
    private var gattWaiters: [UInt64: CheckedContinuation<Result<GATTResult, GATTError>, Never>] = [:]
    private var nextToken: UInt64 = 1
    private var pairingWaiter: CheckedContinuation<Result<PairingResult, LinkError>, Never>?
    private var encryptionWaiter: CheckedContinuation<Result<UInt8?, LinkError>, Never>?
    private var timer = DeadlineTimer()
    private var loop: Task<Void, Never>?
    public private(set) var isConnected = true
    public private(set) var isEncrypted = false
    public private(set) var encryptionKeySize: UInt8?
    public private(set) var disconnectReason: HCIStatus?
    /// Malformed or unexpected PDUs from this peer, counted; the link survives them.
    public private(set) var malformedCount = 0

    init(handle: ConnectionHandle, peer: LEAddress, local: LEAddress, host: BluetoothHost, logger: Logger) {
        self.handle = handle
        self.peer = peer
        self.local = local
        self.host = host
        self.executorHost = host
        var l = logger
        l[metadataKey: "peer"] = "\(peer)"
        self.logger = l
        let (inStream, inCont) = AsyncStream.makeStream(of: LinkInput.self)
        self.inbox = inCont
        let (evStream, evCont) = AsyncStream.makeStream(of: LinkEvent.self, bufferingPolicy: .bufferingNewest(1024))
        self.events = evStream
        self.eventSink = evCont
        Task { await self.startLoop(inStream) }
    }

    private func startLoop(_ stream: AsyncStream<LinkInput>) {
        loop = Task {
            for await input in stream { self.process(input) }
        }
    }

    /// From the host's reader: enqueue, never block.
    nonisolated func deliver(_ input: LinkInput) { inbox.yield(input) }

    // MARK: - Input

    func process(_ input: LinkInput) {
        switch input {
        case let .l2cap(channel, payload):
            switch channel {
            case L2CAPChannel.att:
                apply(gatt.receive(payload, now: hostNow()))
            case L2CAPChannel.leSignalling:
                for action in signalling.receive(payload) {
                    switch action {
                    case .send(let bytes):
                        send(L2CAPChannel.leSignalling, bytes)
                    case let .updateConnection(intervalMin, intervalMax, latency, timeout):
                        let h = handle
                        Task { [host] in
                            _ = await host?.execute(.leConnectionUpdate(h, intervalMin: intervalMin, intervalMax: intervalMax,
                                                                        latency: latency, supervisionTimeout10ms: timeout),
                                                    name: "HCI_LE_Connection_Update")
                        }
                    }
                }
            case L2CAPChannel.smp:
                receiveSMP(payload)
            default:
                malformedCount += 1
                logger.warning("L2CAP frame on an unknown channel ignored", metadata: ["cid": "0x\(String(channel, radix: 16))"])
            }
        case let .encryptionChanged(status, enabled, keySize):
            isEncrypted = status == .success && enabled
            if isEncrypted, let keySize { encryptionKeySize = keySize }
            if let w = encryptionWaiter {
                encryptionWaiter = nil
                w.resume(returning: isEncrypted ? .success(keySize) : .failure(.encryptionFailed(status)))
            }
            if smp != nil {
                smpApply(smp!.encryptionChanged(success: isEncrypted, keySize: keySize, now: hostNow()))
            }
        case .disconnected(let reason):
            guard isConnected else { return }
            isConnected = false
            disconnectReason = reason
            apply(gatt.disconnected())
            if let w = pairingWaiter { pairingWaiter = nil; w.resume(returning: .failure(.disconnected(reason))) }
            if let w = encryptionWaiter { encryptionWaiter = nil; w.resume(returning: .failure(.disconnected(reason))) }
            smp = nil
            timer.cancel()
            eventSink.yield(.disconnected(reason))
            eventSink.finish()
            inbox.finish()
        case .tick:
            timer.fired()
            let now = hostNow()
            apply(gatt.tick(now: now))
            if smp != nil { smpApply(smp!.tick(now: now)) }
        }
        armTimer()
    }

    private func receiveSMP(_ payload: [UInt8]) {
        if smp != nil {
            smpApply(smp!.receive(payload, now: hostNow()))
            return
        }
        if payload.first == 0x0B {
            // Security Request (Vol 3 Part H 3.6.7): the owner pairs or re-encrypts.
            eventSink.yield(.securityRequested)
            return
        }
        malformedCount += 1
        // Pairing Failed "command not supported" for anything else outside a pairing
        // (Vol 3 Part H 3.5.5); a Pairing Failed itself is not answered.
        if payload.first != 0x05 { send(L2CAPChannel.smp, [0x05, 0x07]) }
    }

    private func apply(_ actions: [GATTAction]) {
        for action in actions {
            switch action {
            case .send(let pdu):
                send(L2CAPChannel.att, pdu)
            case let .complete(token, result):
                gattWaiters.removeValue(forKey: token)?.resume(returning: result)
            case let .notification(handle, value):
                eventSink.yield(.notification(handle: handle, value: value))
            case let .indication(handle, value):
                eventSink.yield(.indication(handle: handle, value: value))
            case let .serviceChanged(start, end):
                eventSink.yield(.serviceChanged(start: start, end: end))
            case .transactionTimeout:
                // Core v5.4 Vol 3 Part F 3.3.3: no further ATT on this bearer; end the link.
                logger.warning("ATT transaction timed out (30 s); disconnecting")
                Task { await self.disconnect() }
            }
        }
    }

    private func smpApply(_ actions: [SMPAction]) {
        for action in actions {
            switch action {
            case .send(let pdu):
                send(L2CAPChannel.smp, pdu)
            case let .startEncryption(ltk, ediv, rand):
                let h = handle
                Task { [host] in
                    do {
                        try await host?.runStatus(.leEnableEncryption(h, random: rand, ediv: ediv, ltk: ltk), "HCI_LE_Enable_Encryption")
                    } catch {
                        self.deliver(.encryptionChanged(status: .unspecifiedError, enabled: false, keySize: nil))
                    }
                }
            case .requestPasskey:
                let d = smpDelegate
                Task {
                    let key: UInt32? = if let d { await d.passkey() } else { nil }
                    self.passkeyAnswered(key)
                }
            case .displayPasskey(let n):
                let d = smpDelegate
                Task { if let d { await d.display(n) } }
            case .confirmNumericComparison(let n):
                let d = smpDelegate
                Task {
                    let ok = if let d { await d.confirm(n) } else { false }
                    self.comparisonAnswered(ok)
                }
            case .completed(let result):
                smp = nil
                if let w = pairingWaiter { pairingWaiter = nil; w.resume(returning: .success(result)) }
            case .failed(let failure):
                smp = nil
                logger.warning("pairing failed", metadata: ["reason": "\(failure.description)"])
                if let w = pairingWaiter { pairingWaiter = nil; w.resume(returning: .failure(.pairing(failure))) }
            }
        }
        armTimer()
    }

    private func passkeyAnswered(_ key: UInt32?) {
        guard smp != nil else { return }
        if let key {
            smpApply(smp!.passkeyEntered(key, now: hostNow()))
        } else {
            smpApply(smp!.numericComparisonConfirmed(false, now: hostNow()))
        }
    }

    private func comparisonAnswered(_ ok: Bool) {
        guard smp != nil else { return }
        smpApply(smp!.numericComparisonConfirmed(ok, now: hostNow()))
    }

    private func armTimer() {
        let deadlines = [gatt.nextDeadline, smp?.nextDeadline].compactMap { $0 }
        guard isConnected else { timer.cancel(); return }
        timer.arm(deadlines.min(), now: hostNow()) { [weak self] in self?.deliver(.tick) }
    }

    private func send(_ channel: UInt16, _ payload: [UInt8]) {
        host?.enqueueL2CAP(handle, channel: channel, payload: payload)
    }

    // MARK: - GATT

    /// Runs one GATT procedure (queued behind any outstanding request, Vol 3 Part F 3.3.2).
    public func gattRequest(_ procedure: GATTProcedure) async throws(LinkError) -> GATTResult {
        guard isConnected else { throw .disconnected(disconnectReason ?? .connectionTerminatedByLocalHost) }
        let token = nextToken
        nextToken += 1
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<GATTResult, GATTError>, Never>) in
            gattWaiters[token] = c
            apply(gatt.submit(procedure, token: token, now: hostNow()))
            armTimer()
        }
        switch result {
        case .success(let r): return r
        case .failure(let e): throw .gatt(e)
        }
    }

    public var mtu: UInt16 { gatt.mtu }

    /// Tells the GATT client which handle is Service Changed, so its indications surface as events.
    public func setServiceChangedHandle(_ handle: UInt16) { gatt.setServiceChangedHandle(handle) }

    // MARK: - Security

    /// Pairs (and bonds) as initiator: LE Secure Connections, legacy as fallback.
    public func pair(_ delegate: PairingDelegate, requireMITM: Bool = false, random: @escaping @Sendable (Int) -> [UInt8] = secureRandomBytes)
        async throws(LinkError) -> PairingResult {
        guard isConnected else { throw .disconnected(disconnectReason ?? .connectionTerminatedByLocalHost) }
        guard smp == nil, pairingWaiter == nil else { throw .busy("pairing already in progress") }
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<PairingResult, LinkError>, Never>) in
            pairingWaiter = c
            smpDelegate = delegate
            var initiator = PairingInitiator(local: local, peer: peer, ioCapability: delegate.ioCapability, bonding: true,
                                             requireMITM: requireMITM, allowLegacy: true, random: random)
            let actions = initiator.start(now: hostNow())
            smp = initiator
            smpApply(actions)
        }
        switch result {
        case .success(let r): return r
        case .failure(let e): throw e
        }
    }

    /// Encrypts with a stored key (Core v5.4 Vol 4 Part E 7.8.24); returns the key size.
    @discardableResult
    public func encrypt(ltk: [UInt8], ediv: UInt16, rand: UInt64) async throws(LinkError) -> UInt8? {
        guard isConnected else { throw .disconnected(disconnectReason ?? .connectionTerminatedByLocalHost) }
        guard encryptionWaiter == nil else { throw .busy("encryption already in progress") }
        guard let host else { throw .host(.shutDown) }
        do {
            try await host.runStatus(.leEnableEncryption(handle, random: rand, ediv: ediv, ltk: ltk), "HCI_LE_Enable_Encryption")
        } catch {
            throw .host(error)
        }
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<UInt8?, LinkError>, Never>) in
            if isEncrypted { c.resume(returning: .success(encryptionKeySize)) } else { encryptionWaiter = c }
        }
        switch result {
        case .success(let size): return size
        case .failure(let e): throw e
        }
    }

    /// Ends the link (Core v5.4 Vol 4 Part E 7.1.6); the events stream finishes when the
    /// controller confirms.
    public func disconnect(reason: HCIStatus = .remoteUserTerminated) async {
        guard isConnected, let host else { return }
        try? await host.runStatus(.disconnect(handle, reason: reason), "HCI_Disconnect")
    }
}

/// Cryptographically secure random bytes (getrandom through the standard library).
public func secureRandomBytes(_ count: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
}
