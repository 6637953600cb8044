import IoMTHCI

/// Characteristic properties, Core v5.4 Vol 3 Part G 3.3.1.1 (Table 3.5).
public struct CharacteristicProperties: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let broadcast = CharacteristicProperties(rawValue: 0x01)
    public static let read = CharacteristicProperties(rawValue: 0x02)
    public static let writeWithoutResponse = CharacteristicProperties(rawValue: 0x04)
    public static let write = CharacteristicProperties(rawValue: 0x08)
    public static let notify = CharacteristicProperties(rawValue: 0x10)
    public static let indicate = CharacteristicProperties(rawValue: 0x20)
    public static let authenticatedSignedWrites = CharacteristicProperties(rawValue: 0x40)
    public static let extendedProperties = CharacteristicProperties(rawValue: 0x80)
}

/// GATT attribute types used by discovery, Core v5.4 Vol 3 Part G 3.4 / Assigned Numbers.
public enum GATTUUID {
    public static let primaryService = BluetoothUUID(0x2800)
    public static let secondaryService = BluetoothUUID(0x2801)
    public static let include = BluetoothUUID(0x2802)
    public static let characteristic = BluetoothUUID(0x2803)
    public static let clientCharacteristicConfiguration = BluetoothUUID(0x2902)
    public static let serviceChanged = BluetoothUUID(0x2A05)
}

/// A primary service found by discovery (Vol 3 Part G 4.4).
public struct GATTService: Hashable, Sendable {
    public var uuid: BluetoothUUID
    public var start: UInt16
    public var end: UInt16
    public init(uuid: BluetoothUUID, start: UInt16, end: UInt16) { self.uuid = uuid; self.start = start; self.end = end }
}

/// A characteristic declaration (Vol 3 Part G 3.3.1).
public struct GATTCharacteristic: Hashable, Sendable {
    public var declarationHandle: UInt16
    public var valueHandle: UInt16
    public var properties: CharacteristicProperties
    public var uuid: BluetoothUUID
    public init(declarationHandle: UInt16, valueHandle: UInt16, properties: CharacteristicProperties, uuid: BluetoothUUID) {
        self.declarationHandle = declarationHandle; self.valueHandle = valueHandle
        self.properties = properties; self.uuid = uuid
    }
}

/// A characteristic descriptor (Vol 3 Part G 4.7.1).
public struct GATTDescriptor: Hashable, Sendable {
    public var handle: UInt16
    public var uuid: BluetoothUUID
    public init(handle: UInt16, uuid: BluetoothUUID) { self.handle = handle; self.uuid = uuid }
}

/// A GATT client procedure, Core v5.4 Vol 3 Part G 4.
public enum GATTProcedure: Sendable, Hashable {
    /// 4.3.1. Sent at most once per connection; later submissions complete with the current MTU.
    case exchangeMTU
    /// 4.4.1 Discover All Primary Services (Read By Group Type 0x2800).
    case discoverPrimaryServices
    /// 4.4.2 Discover Primary Service by Service UUID (Find By Type Value).
    case discoverPrimaryService(uuid: BluetoothUUID)
    /// 4.6.1 Discover All Characteristics of a Service (Read By Type 0x2803).
    case discoverCharacteristics(start: UInt16, end: UInt16)
    /// 4.7.1 Discover All Characteristic Descriptors (Find Information). `start > end` completes
    /// at once with no descriptors (a characteristic whose value handle ends its service).
    case discoverDescriptors(start: UInt16, end: UInt16)
    /// 4.8.1 / 4.8.3: Read, then Read Blob while a chunk fills ATT_MTU-1, up to 512 octets (Vol 3 Part F 3.2.9).
    case read(handle: UInt16)
    /// 4.9.3 Write Characteristic Value (value ≤ ATT_MTU-3).
    case write(handle: UInt16, value: [UInt8])
    /// 4.9.1 Write Without Response; sent at once (commands are no transaction), completes `.done`.
    case writeWithoutResponse(handle: UInt16, value: [UInt8])
    /// 4.12.3 write 0x0001 (notifications) or 0x0002 (indications) to a CCCD (3.3.3.3).
    case subscribe(cccdHandle: UInt16, indications: Bool)
    /// Write 0x0000 to a CCCD.
    case unsubscribe(cccdHandle: UInt16)
}

/// What a finished procedure produced.
public enum GATTResult: Sendable, Hashable {
    case mtu(UInt16)
    case services([GATTService])
    case characteristics([GATTCharacteristic])
    case descriptors([GATTDescriptor])
    case value([UInt8])
    case done
}

/// Why a procedure failed.
public enum GATTError: Error, Sendable, Hashable {
    /// The server answered with an Error Response (e.g. insufficientEncryption: pair and retry).
    case att(ATTErrorCode, handle: UInt16)
    /// The response could not be decoded or broke a rule; names the field.
    case malformedResponse(String)
    /// A response PDU that does not answer the outstanding request.
    case unexpectedResponse(opcode: UInt8)
    /// The 30 s ATT transaction timeout fired (Vol 3 Part F 3.3.3); the bearer is dead.
    case timeout
    case disconnected
    /// The procedure cannot be sent as asked (names why).
    case invalidRequest(String)
}

/// What the host must do after a client call.
public enum GATTAction: Sendable, Hashable {
    /// An ATT PDU to send on CID 0x0004.
    case send([UInt8])
    case complete(token: UInt64, Result<GATTResult, GATTError>)
    case notification(handle: UInt16, value: [UInt8])
    /// An indication; the confirmation `.send` follows in the same batch.
    case indication(handle: UInt16, value: [UInt8])
    /// An indication on the Service Changed handle (Vol 3 Part G 7.1): the affected range.
    case serviceChanged(start: UInt16, end: UInt16)
    /// The ATT transaction timed out (Vol 3 Part F 3.3.3): end the link. Nothing more is sent.
    case transactionTimeout
}

/// The GATT client of one ATT bearer (one per connection), Core v5.4 Vol 3 Part F 3.3 and Part G 4.
///
/// One request outstanding at a time (Vol 3 Part F 3.3.2); later procedures wait in FIFO order.
/// Also the minimal server side every ATT bearer needs: Exchange MTU is answered, Read By Group Type
/// gets attributeNotFound, every other request requestNotSupported, commands are ignored.
public struct GATTClient: Sendable {
    /// ATT_MTU in force (23 until an exchange, Vol 3 Part F 3.2.8).
    public private(set) var mtu: UInt16 = 23
    public let preferredMTU: UInt16
    public let transactionTimeoutMs: UInt64
    /// Handle Value Confirmations received that no indication of ours was waiting for.
    public private(set) var unexpectedConfirmations = 0
    /// Responses that arrived when no request was outstanding (e.g. after a timeout).
    public private(set) var strayResponses = 0
    public private(set) var isTimedOut = false
    public private(set) var isDisconnected = false

    private var mtuExchanged = false
    private var serviceChangedHandle: UInt16?
    private var queue: [(token: UInt64, procedure: GATTProcedure)] = []
    private var current: Running?
    private var deadline: UInt64?

    private struct Running: Sendable {
        var token: UInt64
        var step: Step
        /// The request opcode outstanding (for matching Error Responses).
        var requestOpcode: UInt8
    }

    private enum Step: Sendable {
        case mtu
        case services(next: UInt16, found: [GATTService])
        case servicesByUUID(uuid: BluetoothUUID, next: UInt16, found: [GATTService])
        case characteristics(next: UInt16, end: UInt16, found: [GATTCharacteristic])
        case descriptors(next: UInt16, end: UInt16, found: [GATTDescriptor])
        case read(handle: UInt16, value: [UInt8])
        case write
    }

    public init(preferredMTU: UInt16 = 247, transactionTimeoutMs: UInt64 = 30_000) {
        self.preferredMTU = max(23, preferredMTU)
        self.transactionTimeoutMs = transactionTimeoutMs
    }

    /// The handle of the Service Changed characteristic value (0x2A05): indications on it become
    /// `.serviceChanged`.
    public mutating func setServiceChangedHandle(_ handle: UInt16) { serviceChangedHandle = handle }

    /// When `tick` must next be called (the outstanding request's timeout), or nil.
    public var nextDeadline: UInt64? { deadline }

    /// Procedures submitted and not yet completed (running + queued).
    public var pendingCount: Int { queue.count + (current == nil ? 0 : 1) }

    public mutating func submit(_ procedure: GATTProcedure, token: UInt64, now: UInt64) -> [GATTAction] {
        if isDisconnected { return [.complete(token: token, .failure(.disconnected))] }
        if isTimedOut { return [.complete(token: token, .failure(.timeout))] }
        if case .writeWithoutResponse(let h, let v) = procedure {
            guard v.count <= Int(mtu) - 3 else {
                return [.complete(token: token, .failure(.invalidRequest("value of \(v.count) octets exceeds ATT_MTU-3 = \(Int(mtu) - 3)")))]
            }
            return [.send(ATTPDU.writeCommand(handle: h, value: v).encode()), .complete(token: token, .success(.done))]
        }
        queue.append((token, procedure))
        var out: [GATTAction] = []
        startNext(now: now, into: &out)
        return out
    }

    public mutating func tick(now: UInt64) -> [GATTAction] {
        guard let d = deadline, now >= d, current != nil else { return [] }
        isTimedOut = true
        var out: [GATTAction] = []
        failAll(.timeout, into: &out)
        out.append(.transactionTimeout)
        return out
    }

    /// The link is gone: every outstanding and queued procedure fails `.disconnected`, and so does
    /// anything submitted later (use a new client for a new connection).
    public mutating func disconnected() -> [GATTAction] {
        isDisconnected = true
        var out: [GATTAction] = []
        failAll(.disconnected, into: &out)
        return out
    }

    private mutating func failAll(_ e: GATTError, into out: inout [GATTAction]) {
        if let c = current { out.append(.complete(token: c.token, .failure(e))) }
        current = nil
        deadline = nil
        for q in queue { out.append(.complete(token: q.token, .failure(e))) }
        queue.removeAll()
    }

    // MARK: receive

    /// Bytes from CID 0x0004.
    public mutating func receive(_ attPayload: [UInt8], now: UInt64) -> [GATTAction] {
        guard let opcode = attPayload.first, !isDisconnected else { return [] }
        let pdu: ATTPDU
        do {
            pdu = try ATTPDU.decode(attPayload)
        } catch {
            return malformed(opcode: opcode, error: error, now: now)
        }
        var out: [GATTAction] = []
        switch pdu {
        case .handleValueNotification(let h, let v):
            out.append(.notification(handle: h, value: v))
        case .multipleHandleValueNotification(let entries):
            for e in entries { out.append(.notification(handle: e.handle, value: e.value)) }
        case .handleValueIndication(let h, let v):
            if h == serviceChangedHandle, v.count == 4 {
                out.append(.serviceChanged(start: UInt16(v[0]) | UInt16(v[1]) << 8, end: UInt16(v[2]) | UInt16(v[3]) << 8))
            } else {
                out.append(.indication(handle: h, value: v))
            }
            out.append(.send(ATTPDU.handleValueConfirmation.encode()))
        case .handleValueConfirmation:
            unexpectedConfirmations += 1
        case .exchangeMTURequest(let clientMTU):
            // Vol 3 Part F 3.4.2.2: both sides then use min(client, server), at least 23.
            if !isTimedOut { out.append(.send(ATTPDU.exchangeMTUResponse(serverRxMTU: preferredMTU).encode())) }
            mtu = max(23, min(preferredMTU, clientMTU))
        case .readByGroupTypeRequest(let s, _, _):
            if !isTimedOut { out.append(.send(ATTPDU.errorResponse(requestOpcode: opcode, handle: s, error: .attributeNotFound).encode())) }
        case .findInformationRequest(let s, _), .findByTypeValueRequest(let s, _, _, _), .readByTypeRequest(let s, _, _),
             .readRequest(let s), .readBlobRequest(let s, _), .writeRequest(let s, _), .prepareWriteRequest(let s, _, _):
            if !isTimedOut { out.append(.send(ATTPDU.errorResponse(requestOpcode: opcode, handle: s, error: .requestNotSupported).encode())) }
        case .readMultipleRequest, .readMultipleVariableRequest, .executeWriteRequest:
            if !isTimedOut { out.append(.send(ATTPDU.errorResponse(requestOpcode: opcode, handle: 0, error: .requestNotSupported).encode())) }
        case .writeCommand, .signedWriteCommand:
            break
        case .unknown(let op, _):
            if !ATTOpcode.isCommand(op), !isTimedOut {
                out.append(.send(ATTPDU.errorResponse(requestOpcode: op, handle: 0, error: .requestNotSupported).encode()))
            }
        case .errorResponse, .exchangeMTUResponse, .findInformationResponse, .findByTypeValueResponse,
             .readByTypeResponse, .readResponse, .readBlobResponse, .readMultipleResponse, .readByGroupTypeResponse,
             .writeResponse, .prepareWriteResponse, .executeWriteResponse, .readMultipleVariableResponse:
            handleResponse(pdu, now: now, into: &out)
        }
        return out
    }

    /// Server-to-client response opcodes (Vol 3 Part F 3.4.8).
    private static let responseOpcodes: Set<UInt8> = [0x01, 0x03, 0x05, 0x07, 0x09, 0x0B, 0x0D, 0x0F, 0x11, 0x13, 0x17, 0x19, 0x21]
    /// Client-to-server request opcodes (Vol 3 Part F 3.4.8).
    private static let requestOpcodes: Set<UInt8> = [0x02, 0x04, 0x06, 0x08, 0x0A, 0x0C, 0x0E, 0x10, 0x12, 0x16, 0x18, 0x20]

    private mutating func malformed(opcode: UInt8, error: ATTDecodeError, now: UInt64) -> [GATTAction] {
        var out: [GATTAction] = []
        if Self.responseOpcodes.contains(opcode) {
            guard let c = current else { strayResponses += 1; return [] }
            finish(c.token, .failure(.malformedResponse(error.description)), now: now, into: &out)
        } else if Self.requestOpcodes.contains(opcode), !isTimedOut {
            // Vol 3 Part F 3.4.1.1: a request with invalid parameters gets Invalid PDU.
            out.append(.send(ATTPDU.errorResponse(requestOpcode: opcode, handle: 0, error: .invalidPDU).encode()))
        } else if opcode == ATTOpcode.handleValueIndication {
            // Unusable, but confirmed anyway so the server's own 30 s transaction does not time out.
            out.append(.send(ATTPDU.handleValueConfirmation.encode()))
        }
        // Malformed notifications, confirmations and commands are dropped.
        return out
    }

    private mutating func handleResponse(_ pdu: ATTPDU, now: UInt64, into out: inout [GATTAction]) {
        guard let c = current else { strayResponses += 1; return }
        if case .errorResponse(let reqOp, let h, let code) = pdu {
            guard reqOp == c.requestOpcode else {
                finish(c.token, .failure(.unexpectedResponse(opcode: ATTOpcode.errorResponse)), now: now, into: &out)
                return
            }
            handleError(c, code: code, handle: h, now: now, into: &out)
            return
        }
        guard pdu.opcode == c.requestOpcode + 1 else {
            finish(c.token, .failure(.unexpectedResponse(opcode: pdu.opcode)), now: now, into: &out)
            return
        }
        switch (c.step, pdu) {
        case (.mtu, .exchangeMTUResponse(let serverMTU)):
            mtu = max(23, min(preferredMTU, serverMTU))
            finish(c.token, .success(.mtu(mtu)), now: now, into: &out)

        case (.services(let next, var found), .readByGroupTypeResponse(let entries)):
            var last = next
            var minimum = Int(next)
            for e in entries {
                guard let u = BluetoothUUID(wireBytes: e.value), e.value.count == 2 || e.value.count == 16 else {
                    return fail(c, "service UUID: \(e.value.count) octets", now: now, into: &out)
                }
                guard Int(e.handle) >= minimum, e.endGroup >= e.handle else {
                    return fail(c, "service handle range \(e.handle)...\(e.endGroup) out of order", now: now, into: &out)
                }
                found.append(GATTService(uuid: u, start: e.handle, end: e.endGroup))
                last = e.endGroup
                minimum = Int(e.endGroup) + 1
            }
            if last == 0xFFFF { return finish(c.token, .success(.services(found)), now: now, into: &out) }
            send(.readByGroupTypeRequest(start: last + 1, end: 0xFFFF, groupType: GATTUUID.primaryService),
                 Running(token: c.token, step: .services(next: last + 1, found: found), requestOpcode: c.requestOpcode),
                 now: now, into: &out)

        case (.servicesByUUID(let uuid, let next, var found), .findByTypeValueResponse(let ranges)):
            var last = next
            var minimum = Int(next)
            for r in ranges {
                guard Int(r.found) >= minimum, r.groupEnd >= r.found else {
                    return fail(c, "service handle range \(r.found)...\(r.groupEnd) out of order", now: now, into: &out)
                }
                found.append(GATTService(uuid: uuid, start: r.found, end: r.groupEnd))
                last = r.groupEnd
                minimum = Int(r.groupEnd) + 1
            }
            if last == 0xFFFF { return finish(c.token, .success(.services(found)), now: now, into: &out) }
            send(.findByTypeValueRequest(start: last + 1, end: 0xFFFF, type: 0x2800, value: uuid.shortestWireBytes),
                 Running(token: c.token, step: .servicesByUUID(uuid: uuid, next: last + 1, found: found), requestOpcode: c.requestOpcode),
                 now: now, into: &out)

        case (.characteristics(let next, let end, var found), .readByTypeResponse(let entries)):
            var last = next
            var minimum = Int(next)
            for e in entries {
                guard e.value.count == 5 || e.value.count == 19 else {
                    return fail(c, "characteristic declaration: \(e.value.count) octets, expected 5 or 19", now: now, into: &out)
                }
                guard Int(e.handle) >= minimum, e.handle <= end else {
                    return fail(c, "characteristic declaration handle \(e.handle) out of order or outside \(next)...\(end)", now: now, into: &out)
                }
                let vh = UInt16(e.value[1]) | UInt16(e.value[2]) << 8
                guard let u = BluetoothUUID(wireBytes: e.value[3...]) else {
                    return fail(c, "characteristic UUID", now: now, into: &out)
                }
                found.append(GATTCharacteristic(declarationHandle: e.handle, valueHandle: vh,
                                                properties: CharacteristicProperties(rawValue: e.value[0]), uuid: u))
                last = e.handle
                minimum = Int(e.handle) + 1
            }
            if last >= end { return finish(c.token, .success(.characteristics(found)), now: now, into: &out) }
            send(.readByTypeRequest(start: last + 1, end: end, type: GATTUUID.characteristic),
                 Running(token: c.token, step: .characteristics(next: last + 1, end: end, found: found), requestOpcode: c.requestOpcode),
                 now: now, into: &out)

        case (.descriptors(let next, let end, var found), .findInformationResponse(_, let entries)):
            var last = next
            var minimum = Int(next)
            for e in entries {
                guard Int(e.handle) >= minimum, e.handle <= end else {
                    return fail(c, "descriptor handle \(e.handle) out of order or outside \(next)...\(end)", now: now, into: &out)
                }
                found.append(GATTDescriptor(handle: e.handle, uuid: e.uuid))
                last = e.handle
                minimum = Int(e.handle) + 1
            }
            if last >= end { return finish(c.token, .success(.descriptors(found)), now: now, into: &out) }
            send(.findInformationRequest(start: last + 1, end: end),
                 Running(token: c.token, step: .descriptors(next: last + 1, end: end, found: found), requestOpcode: c.requestOpcode),
                 now: now, into: &out)

        case (.read(let handle, var value), .readResponse(let chunk)), (.read(let handle, var value), .readBlobResponse(let chunk)):
            value.append(contentsOf: chunk)
            let full = chunk.count >= Int(mtu) - 1
            if !full || value.count >= 512 {
                if value.count > 512 { value.removeSubrange(512...) }
                return finish(c.token, .success(.value(value)), now: now, into: &out)
            }
            send(.readBlobRequest(handle: handle, offset: UInt16(value.count)),
                 Running(token: c.token, step: .read(handle: handle, value: value), requestOpcode: ATTOpcode.readBlobRequest),
                 now: now, into: &out)

        case (.write, .writeResponse):
            finish(c.token, .success(.done), now: now, into: &out)

        default:
            finish(c.token, .failure(.unexpectedResponse(opcode: pdu.opcode)), now: now, into: &out)
        }
    }

    private mutating func handleError(_ c: Running, code: ATTErrorCode, handle: UInt16, now: UInt64, into out: inout [GATTAction]) {
        switch c.step {
        case .mtu where code == .requestNotSupported:
            // Vol 3 Part F 3.4.2: a server without MTU exchange keeps the default 23.
            mtuExchanged = true
            finish(c.token, .success(.mtu(mtu)), now: now, into: &out)
        case .services(_, let found) where code == .attributeNotFound,
             .servicesByUUID(_, _, let found) where code == .attributeNotFound:
            finish(c.token, .success(.services(found)), now: now, into: &out)
        case .characteristics(_, _, let found) where code == .attributeNotFound:
            finish(c.token, .success(.characteristics(found)), now: now, into: &out)
        case .descriptors(_, _, let found) where code == .attributeNotFound:
            finish(c.token, .success(.descriptors(found)), now: now, into: &out)
        case .read(_, let value) where c.requestOpcode == ATTOpcode.readBlobRequest
            && (code == .attributeNotLong || code == .invalidOffset):
            // Vol 3 Part G 4.8.3: the value ended exactly on a chunk boundary.
            finish(c.token, .success(.value(value)), now: now, into: &out)
        default:
            finish(c.token, .failure(.att(code, handle: handle)), now: now, into: &out)
        }
    }

    private mutating func fail(_ c: Running, _ why: String, now: UInt64, into out: inout [GATTAction]) {
        finish(c.token, .failure(.malformedResponse(why)), now: now, into: &out)
    }

    private mutating func finish(_ token: UInt64, _ result: Result<GATTResult, GATTError>, now: UInt64, into out: inout [GATTAction]) {
        current = nil
        deadline = nil
        out.append(.complete(token: token, result))
        startNext(now: now, into: &out)
    }

    private mutating func send(_ pdu: ATTPDU, _ running: Running, now: UInt64, into out: inout [GATTAction]) {
        current = running
        deadline = now + transactionTimeoutMs
        out.append(.send(pdu.encode()))
    }

    // MARK: starting procedures

    private mutating func startNext(now: UInt64, into out: inout [GATTAction]) {
        while current == nil, !isTimedOut, !isDisconnected, !queue.isEmpty {
            let (token, p) = queue.removeFirst()
            switch p {
            case .exchangeMTU:
                if mtuExchanged {
                    out.append(.complete(token: token, .success(.mtu(mtu))))
                } else {
                    mtuExchanged = true
                    send(.exchangeMTURequest(clientRxMTU: preferredMTU),
                         Running(token: token, step: .mtu, requestOpcode: ATTOpcode.exchangeMTURequest), now: now, into: &out)
                }
            case .discoverPrimaryServices:
                send(.readByGroupTypeRequest(start: 0x0001, end: 0xFFFF, groupType: GATTUUID.primaryService),
                     Running(token: token, step: .services(next: 1, found: []), requestOpcode: ATTOpcode.readByGroupTypeRequest),
                     now: now, into: &out)
            case .discoverPrimaryService(let uuid):
                send(.findByTypeValueRequest(start: 0x0001, end: 0xFFFF, type: 0x2800, value: uuid.shortestWireBytes),
                     Running(token: token, step: .servicesByUUID(uuid: uuid, next: 1, found: []),
                             requestOpcode: ATTOpcode.findByTypeValueRequest),
                     now: now, into: &out)
            case .discoverCharacteristics(let s, let e):
                guard s != 0, s <= e else {
                    out.append(.complete(token: token, .failure(.invalidRequest("handle range \(s)...\(e)"))))
                    continue
                }
                send(.readByTypeRequest(start: s, end: e, type: GATTUUID.characteristic),
                     Running(token: token, step: .characteristics(next: s, end: e, found: []), requestOpcode: ATTOpcode.readByTypeRequest),
                     now: now, into: &out)
            case .discoverDescriptors(let s, let e):
                guard s != 0 else {
                    out.append(.complete(token: token, .failure(.invalidRequest("handle range \(s)...\(e)"))))
                    continue
                }
                if s > e {
                    out.append(.complete(token: token, .success(.descriptors([]))))
                    continue
                }
                send(.findInformationRequest(start: s, end: e),
                     Running(token: token, step: .descriptors(next: s, end: e, found: []), requestOpcode: ATTOpcode.findInformationRequest),
                     now: now, into: &out)
            case .read(let h):
                guard h != 0 else {
                    out.append(.complete(token: token, .failure(.invalidRequest("handle 0x0000"))))
                    continue
                }
                send(.readRequest(handle: h), Running(token: token, step: .read(handle: h, value: []), requestOpcode: ATTOpcode.readRequest),
                     now: now, into: &out)
            case .write(let h, let v):
                startWrite(token: token, handle: h, value: v, now: now, into: &out)
            case .subscribe(let h, let ind):
                startWrite(token: token, handle: h, value: [ind ? 0x02 : 0x01, 0x00], now: now, into: &out)
            case .unsubscribe(let h):
                startWrite(token: token, handle: h, value: [0x00, 0x00], now: now, into: &out)
            case .writeWithoutResponse(let h, let v):
                // Normally sent by submit() directly; kept for completeness.
                out.append(.send(ATTPDU.writeCommand(handle: h, value: v).encode()))
                out.append(.complete(token: token, .success(.done)))
            }
        }
    }

    private mutating func startWrite(token: UInt64, handle: UInt16, value: [UInt8], now: UInt64, into out: inout [GATTAction]) {
        guard handle != 0 else {
            out.append(.complete(token: token, .failure(.invalidRequest("handle 0x0000"))))
            return
        }
        guard value.count <= Int(mtu) - 3 else {
            out.append(.complete(token: token, .failure(.invalidRequest("value of \(value.count) octets exceeds ATT_MTU-3 = \(Int(mtu) - 3)"))))
            return
        }
        send(.writeRequest(handle: handle, value: value),
             Running(token: token, step: .write, requestOpcode: ATTOpcode.writeRequest), now: now, into: &out)
    }
}
