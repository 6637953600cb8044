import IoMTCore
import IoMTHCI
import IoMTHCITransport
import IoMTATT
import Logging

/// Our userspace LE host over one controller (issue 5), layered like Bumble's: the transport
/// carries H4 packets; this actor owns HCI command flow (credits, deadlines), ACL credits,
/// fragmentation and reassembly, scanning and connection set-up; each connection is an
/// `LELink` actor that owns its ATT bearer, LE signalling and SMP.
///
/// Every packet from the controller goes through one reader task that awaits this actor, so
/// events are handled in the order the controller sent them. A malformed event or ACL packet
/// is counted and logged; it never stops the host.
public actor BluetoothHost {
    public struct Options: Sendable {
        /// Our random static address (Core v5.4 Vol 6 Part B 1.3.2.1); top two bits 0b11.
        public var ownAddress: BDAddress
        public var commandTimeoutMs: UInt64 = 2_000
        /// Connection interval 30–50 ms, latency 0, supervision timeout 4 s: a wearable link.
        public var connIntervalMin: UInt16 = 24
        public var connIntervalMax: UInt16 = 40
        public var supervisionTimeout10ms: UInt16 = 400
        public init(ownAddress: BDAddress) { self.ownAddress = ownAddress }
    }

    /// A controller's advertisement as the host saw it.
    public struct Advertisement: Sendable, Hashable {
        public var address: LEAddress
        public var rssi: Int8?
        public var connectable: Bool
        public var data: AdvertisingData
        public var receivedAtMs: UInt64
    }

    public nonisolated let options: Options
    let transport: any HCITransport
    let logger: Logger

    private var flow: CommandFlow
    private var commandWaiters: [UInt64: CheckedContinuation<CommandOutcome, Never>] = [:]
    private var commandNames: [UInt64: String] = [:]
    private var nextToken: UInt64 = 1
    private var timer = DeadlineTimer()

    private var acl: ACLOutbound?
    private var reassembler = L2CAPReassembler(maxPayloadLength: 65_535)
    private var links: [ConnectionHandle: LELink] = [:]
    private var pendingConnect: (peer: LEAddress, waiter: CheckedContinuation<LELink, any Error>)?
    private var connectTimer = DeadlineTimer()
    /// The peer of an attempt we cancelled whose final Connection Complete has not come yet.
    private var cancelling: LEAddress?
    private var cancelWaiters: [CheckedContinuation<Void, Never>] = []

    private var scanSubscribers: [Int: AsyncStream<Advertisement>.Continuation] = [:]
    private var nextSubscriber = 0
    private var connectionSubscribers: [Int: AsyncStream<LELink>.Continuation] = [:]
    private var scanning = false
    private var failure: BluetoothHostError?
    private var readerTask: Task<Void, Never>?

    /// Malformed packets from the controller or peers, by kind: counted, logged, survived.
    public private(set) var malformed: [String: Int] = [:]
    public private(set) var localVersion: LocalVersionInformation?
    public private(set) var controllerAddress: BDAddress?

    /// L2CAP frames from links, in the order the links produced them (one consumer task).
    private struct Outbound: Sendable { var handle: ConnectionHandle; var channel: UInt16; var payload: [UInt8] }
    private nonisolated let outbound: AsyncStream<Outbound>.Continuation
    private let outboundStream: AsyncStream<Outbound>
    private var writerTask: Task<Void, Never>?

    public init(transport: any HCITransport, options: Options, logger: Logger) {
        (outboundStream, outbound) = AsyncStream.makeStream(of: Outbound.self)
        self.transport = transport
        self.options = options
        self.logger = logger
        self.flow = CommandFlow(timeoutMs: options.commandTimeoutMs)
    }

    // MARK: - Start and stop

    /// Starts reading from the controller and runs the initialisation sequence:
    /// Reset, version, event masks, buffer sizes, BD_ADDR, our random static address.
    public func start() async throws(BluetoothHostError) {
        let stream = transport.incoming
        let out = outboundStream
        writerTask = Task { [weak self] in
            for await frame in out {
                guard let self else { return }
                await self.sendL2CAP(frame.handle, channel: frame.channel, payload: frame.payload)
            }
        }
        // The read loop runs on this actor: each packet resumes it here directly (one hop, not two).
        readerTask = Task { await self.readLoop(stream) }
        try await initialise()
    }

    private func readLoop(_ stream: AsyncThrowingStream<HCIPacket, any Error>) async {
        do {
            for try await packet in stream { handle(packet) }
            transportEnded("the controller closed the connection")
        } catch {
            transportEnded("\(error)")
        }
    }

    private func initialise() async throws(BluetoothHostError) {
        _ = try await run(.reset, "HCI_Reset")
        if let v = try? await run(.readLocalVersionInformation, "HCI_Read_Local_Version_Information") {
            localVersion = try? LocalVersionInformation.decode(v)
        }
        // Core v5.4 Vol 4 Part E 7.3.1: Disconnection Complete (bit 4), Encryption Change (7),
        // Hardware Error (15), Data Buffer Overflow (25), Encryption Key Refresh Complete (47), LE Meta (61).
        let mask: UInt64 = 1 << 4 | 1 << 7 | 1 << 15 | 1 << 25 | 1 << 47 | 1 << 61
        _ = try await run(.setEventMask(mask), "HCI_Set_Event_Mask")
        // Core v5.4 Vol 4 Part E 7.8.1: connection complete, advertising report, connection update,
        // remote features, LTK request, enhanced connection complete, extended advertising report.
        let leMask: UInt64 = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 4 | 1 << 9 | 1 << 11
        _ = try await run(.leSetEventMask(leMask), "HCI_LE_Set_Event_Mask")
        var size: BufferSize
        do {
            size = try BufferSize.decodeLEReadBufferSize(try await run(.leReadBufferSize, "HCI_LE_Read_Buffer_Size"))
            if size.sharesBREDRBuffers {
                // Core v5.4 Vol 4 Part E 7.8.2: zero means the LE traffic shares the BR/EDR buffers.
                size = size.resolved(bredr: try BufferSize.decodeReadBufferSize(try await run(.readBufferSize, "HCI_Read_Buffer_Size")))
            }
        } catch let e as BluetoothHostError {
            throw e
        } catch {
            throw .malformedReply("buffer size: \(error)")
        }
        guard size.leACLDataPacketLength > 0, size.totalNumLEACLDataPackets > 0 else {
            throw .malformedReply("the controller reports no ACL buffers")
        }
        acl = ACLOutbound(bufferLength: size.leACLDataPacketLength, totalPackets: size.totalNumLEACLDataPackets)
        if let r = try? await run(.readBDADDR, "HCI_Read_BD_ADDR") { controllerAddress = try? ReadBDADDRResult.decode(r).address }
        _ = try await run(.leSetRandomAddress(options.ownAddress), "HCI_LE_Set_Random_Address")
        logger.info("Bluetooth controller ready", metadata: [
            "address": "\(options.ownAddress) (random static)",
            "acl": "\(size.totalNumLEACLDataPackets) x \(size.leACLDataPacketLength) octets",
        ])
    }

    /// Stops everything: links are disconnected, waiters fail, the transport closes.
    public func shutdown() async {
        for (handle, _) in links {
            _ = await execute(.disconnect(handle, reason: .remoteUserTerminated), name: "HCI_Disconnect")
        }
        fail(.shutDown)
        transport.close()
        readerTask?.cancel()
        outbound.finish()
    }

    private func transportEnded(_ why: String) {
        if failure == nil { logger.error("Bluetooth controller lost", metadata: ["reason": "\(why)"]) }
        fail(.transport(why))
    }

    private func fail(_ error: BluetoothHostError) {
        if failure == nil { failure = error }
        for (_, w) in commandWaiters { w.resume(returning: .timedOut) }
        commandWaiters.removeAll()
        pendingConnect?.waiter.resume(throwing: error)
        pendingConnect = nil
        cancelDone()
        for (_, link) in links { deliver(.disconnected(.connectionTerminatedByLocalHost), to: link) }
        links.removeAll()
        for (_, s) in scanSubscribers { s.finish() }
        scanSubscribers.removeAll()
        for (_, s) in connectionSubscribers { s.finish() }
        connectionSubscribers.removeAll()
        timer.cancel()
        connectTimer.cancel()
    }

    /// Set once the host has failed for good (transport lost, shut down); make a new host then.
    public var failed: BluetoothHostError? { failure }

    // MARK: - Commands

    /// Runs one HCI command under the flow control and its deadline.
    func execute(_ command: HCICommand, name: String) async -> CommandOutcome {
        if failure != nil { return .timedOut }
        let token = nextToken
        nextToken += 1
        return await withCheckedContinuation { (c: CheckedContinuation<CommandOutcome, Never>) in
            commandWaiters[token] = c
            commandNames[token] = name
            perform(flow.submit(command, token: token, now: hostNow()))
        }
    }

    /// Runs a command that answers with Command Complete and checks its status octet; returns the
    /// return parameters (status included).
    @discardableResult
    func run(_ command: HCICommand, _ name: String) async throws(BluetoothHostError) -> [UInt8] {
        switch await execute(command, name: name) {
        case .complete(let params):
            guard let status = params.first else { throw .malformedReply("\(name): empty return parameters") }
            guard status == 0 else { throw .commandFailed(name, HCIStatus(rawValue: status)) }
            return params
        case .status(let s):
            guard s == .success else { throw .commandFailed(name, s) }
            return [0]
        case .timedOut:
            throw failure ?? .commandTimedOut(name)
        default:
            throw failure ?? .commandTimedOut(name)
        }
    }

    /// Runs a command that answers with Command Status (LE Create Connection, Disconnect, ...).
    func runStatus(_ command: HCICommand, _ name: String) async throws(BluetoothHostError) {
        switch await execute(command, name: name) {
        case .status(let s):
            guard s == .success else { throw .commandFailed(name, s) }
        case .complete(let params):
            let s = HCIStatus(rawValue: params.first ?? 0xFF)
            guard s == .success else { throw .commandFailed(name, s) }
        default:
            throw failure ?? .commandTimedOut(name)
        }
    }

    private func perform(_ actions: [CommandFlowAction]) {
        for action in actions {
            switch action {
            case .send(let command):
                send(.command(command))
            case let .complete(token, outcome):
                if case .timedOut = outcome {
                    logger.error("HCI command timed out", metadata: ["command": "\(commandNames[token] ?? "?")"])
                }
                commandNames[token] = nil
                commandWaiters.removeValue(forKey: token)?.resume(returning: outcome)
            }
        }
        armCommandTimer()
    }

    private func armCommandTimer() {
        timer.arm(flow.nextDeadline, now: hostNow()) { [weak self] in await self?.commandTimerFired() }
    }

    private func commandTimerFired() {
        timer.fired()
        perform(flow.tick(now: hostNow()))
    }

    private func send(_ packet: HCIPacket) {
        do {
            try transport.send(packet)
        } catch {
            transportEnded("\(error)")
        }
    }

    // MARK: - Incoming packets

    private func handle(_ packet: HCIPacket) {
        switch packet {
        case let .event(code, parameters):
            let event: HCIEvent
            do {
                event = try HCIEvent.decode(code: code, parameters: parameters)
            } catch {
                count("event", "malformed HCI event 0x\(String(code, radix: 16)): \(error)")
                return
            }
            perform(flow.receive(event, now: hostNow()))
            handle(event)
        case .acl(let p):
            let frame: L2CAPBasicFrame?
            do {
                frame = try reassembler.receive(p)
            } catch {
                count("acl", "dropped a malformed L2CAP frame on \(p.handle): \(error)")
                return
            }
            if let frame {
                if let link = links[frame.handle] {
                    deliver(.l2cap(channel: frame.channelID, payload: frame.payload), to: link)
                } else {
                    count("acl", "ACL data for unknown connection \(frame.handle)")
                }
            }
        default:
            count("packet", "ignored an unexpected packet type from the controller")
        }
    }

    private func count(_ kind: String, _ message: String) {
        malformed[kind, default: 0] += 1
        logger.warning("\(message)")
    }

    private func handle(_ event: HCIEvent) {
        switch event {
        case .leAdvertisingReports(let reports):
            guard !scanSubscribers.isEmpty else { return }
            let now = hostNow()
            for r in reports {
                let data: AdvertisingData
                do {
                    data = try AdvertisingData.parse(r.data)
                } catch {
                    count("advertising", "malformed advertising data from \(r.address): \(error)")
                    continue
                }
                let ad = Advertisement(address: r.address, rssi: r.rssi, connectable: r.isConnectable, data: data, receivedAtMs: now)
                for (_, s) in scanSubscribers { s.yield(ad) }
            }
        case .leConnectionComplete(let cc):
            connectionCompleted(cc)
        case let .disconnectionComplete(status, handle, reason):
            guard status == .success else { return }
            if let link = links.removeValue(forKey: handle) {
                logger.info("Bluetooth link down", metadata: ["peer": "\(link.peer)", "reason": "\(reason)"])
                deliver(.disconnected(reason), to: link)
            }
            reassembler.disconnected(handle)
            if var a = acl {
                let sendable = a.disconnected(handle)
                acl = a
                for p in sendable { send(.acl(p)) }
            }
        case let .encryptionChange(status, handle, enabled, keySize):
            if let link = links[handle] { deliver(.encryptionChanged(status: status, enabled: enabled, keySize: keySize), to: link) }
        case let .encryptionKeyRefreshComplete(status, handle):
            if let link = links[handle] { deliver(.encryptionChanged(status: status, enabled: status == .success, keySize: nil), to: link) }
        case .numberOfCompletedPackets(let done):
            if var a = acl {
                let sendable = a.completed(done)
                acl = a
                for p in sendable { send(.acl(p)) }
            }
        case let .leLongTermKeyRequest(handle, _, _):
            // We are always central; a peripheral-role key request is refused (Vol 4 Part E 7.8.26).
            Task { _ = await self.execute(.leLongTermKeyRequestNegativeReply(handle), name: "HCI_LE_Long_Term_Key_Request_Negative_Reply") }
        case .hardwareError(let code):
            logger.error("Bluetooth controller reported a hardware error", metadata: ["code": "0x\(String(code, radix: 16))"])
            fail(.transport("controller hardware error 0x\(String(code, radix: 16))"))
            transport.close()
        case .dataBufferOverflow:
            count("acl", "the controller reported an ACL buffer overflow")
        default:
            break
        }
    }

    // MARK: - Scanning

    /// Advertisements while scanning; the stream ends when the host fails or the caller stops
    /// iterating. Several subscribers may listen at once.
    public func advertisements() -> AsyncStream<Advertisement> {
        let id = nextSubscriber
        nextSubscriber += 1
        let (stream, continuation) = AsyncStream.makeStream(of: Advertisement.self, bufferingPolicy: .bufferingNewest(256))
        if failure != nil { continuation.finish(); return stream }
        continuation.onTermination = { [weak self] _ in Task { await self?.unsubscribe(id) } }
        scanSubscribers[id] = continuation
        return stream
    }

    private func unsubscribe(_ id: Int) { scanSubscribers[id] = nil }

    /// Links set up without a waiting `connect` call (a connection attempt that completed after
    /// its deadline: some controllers leave a cancelled attempt pending, reference quirk 3).
    public func unsolicitedConnections() -> AsyncStream<LELink> {
        let id = nextSubscriber
        nextSubscriber += 1
        let (stream, continuation) = AsyncStream.makeStream(of: LELink.self)
        if failure != nil { continuation.finish(); return stream }
        continuation.onTermination = { [weak self] _ in Task { await self?.unsubscribeConnections(id) } }
        connectionSubscribers[id] = continuation
        return stream
    }

    private func unsubscribeConnections(_ id: Int) { connectionSubscribers[id] = nil }

    /// Scanning on or off (legacy LE scanning, Core v5.4 Vol 4 Part E 7.8.10/7.8.11; controllers
    /// may still answer with extended reports, which the host handles the same).
    public func setScanning(_ on: Bool, active: Bool = true) async throws(BluetoothHostError) {
        if on == scanning { return }
        if on {
            // 60 ms window every 100 ms (units of 0.625 ms).
            try await run(.leSetScanParameters(active: active, intervalSlots: 160, windowSlots: 96,
                                               ownAddressType: .randomDevice, filterPolicy: 0), "HCI_LE_Set_Scan_Parameters")
        }
        try await run(.leSetScanEnable(on, filterDuplicates: false), "HCI_LE_Set_Scan_Enable")
        scanning = on
    }

    public var isScanning: Bool { scanning }

    // MARK: - Connections

    /// Connects to `peer` (Core v5.4 Vol 4 Part E 7.8.12); the peer's address type must be the
    /// one it advertises with. On timeout the attempt is cancelled (7.8.13).
    public func connect(to peer: LEAddress, timeoutMs: UInt64 = 10_000) async throws(BluetoothHostError) -> LELink {
        if let failure { throw failure }
        // A cancelled attempt ends with its own LE Connection Complete (Vol 4 Part E 7.8.13);
        // wait for it so it is not taken for the outcome of this attempt.
        if cancelling != nil {
            await withCheckedContinuation { cancelWaiters.append($0) }
            if let failure { throw failure }
        }
        guard pendingConnect == nil, cancelling == nil else { throw .busy }
        let command = HCICommand.leCreateConnection(
            peer: peer, ownAddressType: .randomDevice, scanIntervalSlots: 96, scanWindowSlots: 96,
            connIntervalMin: options.connIntervalMin, connIntervalMax: options.connIntervalMax,
            maxLatency: 0, supervisionTimeout10ms: options.supervisionTimeout10ms)
        // Reserve the slot before the first suspension so a second caller sees `busy`.
        do {
            return try await withCheckedThrowingContinuation { (c: CheckedContinuation<LELink, any Error>) in
                pendingConnect = (peer, c)
                Task { await self.issueConnect(command, peer: peer, timeoutMs: timeoutMs) }
            }
        } catch let e as BluetoothHostError {
            throw e
        } catch {
            throw .transport("\(error)")
        }
    }

    private func issueConnect(_ command: HCICommand, peer: LEAddress, timeoutMs: UInt64) async {
        do {
            try await runStatus(command, "HCI_LE_Create_Connection")
        } catch {
            if let p = pendingConnect, p.peer == peer {
                pendingConnect = nil
                p.waiter.resume(throwing: error)
            }
            return
        }
        guard pendingConnect?.peer == peer else { return }
        let deadline = hostNow() + timeoutMs
        connectTimer.arm(deadline, now: hostNow()) { [weak self] in await self?.connectTimedOut(peer: peer, timeoutMs: timeoutMs) }
    }

    private func connectTimedOut(peer: LEAddress, timeoutMs: UInt64) async {
        connectTimer.fired()
        guard let p = pendingConnect, p.peer == peer else { return }
        pendingConnect = nil
        p.waiter.resume(throwing: BluetoothHostError.connectTimedOut(peer, milliseconds: timeoutMs))
        // The controller answers a cancel with a Connection Complete carrying "Unknown Connection
        // Identifier" (Vol 4 Part E 7.8.13), or, if the link formed meanwhile, success (then the
        // link is offered as unsolicited). Some controllers never send it (reference quirk 3):
        // give up waiting after the command timeout.
        cancelling = peer
        let outcome = await execute(.leCreateConnectionCancel, name: "HCI_LE_Create_Connection_Cancel")
        if outcome.commandStatus != .success {
            cancelDone()
            return
        }
        connectTimer.arm(hostNow() + options.commandTimeoutMs, now: hostNow()) { [weak self] in
            await self?.cancelWaitExpired(peer)
        }
    }

    private func cancelWaitExpired(_ peer: LEAddress) {
        connectTimer.fired()
        if cancelling == peer {
            logger.warning("the controller did not confirm a cancelled connection attempt; continuing")
            cancelDone()
        }
    }

    private func cancelDone() {
        cancelling = nil
        let waiters = cancelWaiters
        cancelWaiters.removeAll()
        for w in waiters { w.resume() }
    }

    private func connectionCompleted(_ cc: LEConnectionComplete) {
        if cancelling != nil, pendingConnect == nil {
            connectTimer.cancel()
            cancelDone()
            if cc.status != .success { return }
        }
        let waiting = pendingConnect
        guard cc.status == .success else {
            if let w = waiting {
                pendingConnect = nil
                connectTimer.cancel()
                w.waiter.resume(throwing: BluetoothHostError.connectFailed(w.peer, cc.status))
            }
            return
        }
        let link = LELink(handle: cc.handle, peer: cc.peer, local: LEAddress(options.ownAddress, type: .randomDevice),
                          host: self, logger: logger)
        links[cc.handle] = link
        logger.info("Bluetooth link up", metadata: ["peer": "\(cc.peer)", "handle": "\(cc.handle)"])
        if let w = waiting {
            pendingConnect = nil
            connectTimer.cancel()
            w.waiter.resume(returning: link)
        } else if connectionSubscribers.isEmpty {
            logger.warning("unexpected connection; disconnecting", metadata: ["peer": "\(cc.peer)"])
            Task { await link.disconnect() }
        } else {
            for (_, s) in connectionSubscribers { s.yield(link) }
        }
    }

    // MARK: - For links

    /// Hands a link its input at once: links run on this actor's executor (see
    /// `LELink.unownedExecutor`), so this is a plain call in controller order, not a task hop.
    private func deliver(_ input: LinkInput, to link: LELink) {
        link.assumeIsolated { $0.process(input) }
    }

    /// Queues an L2CAP frame from a link; frames leave in the order they were queued.
    nonisolated func enqueueL2CAP(_ handle: ConnectionHandle, channel: UInt16, payload: [UInt8]) {
        outbound.yield(Outbound(handle: handle, channel: channel, payload: payload))
    }

    /// Sends one L2CAP basic frame on a link, fragmented to the controller's buffer size under
    /// its credits (Core v5.4 Vol 4 Part E 4.1.1).
    func sendL2CAP(_ handle: ConnectionHandle, channel: UInt16, payload: [UInt8]) {
        guard links[handle] != nil, var a = acl else { return }
        let packets = a.send(l2capBasicFrame(channel: channel, payload: payload), on: handle)
        acl = a
        for p in packets { send(.acl(p)) }
    }
}
