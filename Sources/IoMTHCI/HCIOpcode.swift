/// An HCI command opcode: OGF (6 bits) and OCF (10 bits), Core v5.4 Vol 4 Part E 5.4.1.
/// Open: unknown opcodes survive.
public struct HCIOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(ogf: UInt8, ocf: UInt16) { rawValue = UInt16(ogf & 0x3F) << 10 | (ocf & 0x03FF) }

    public var ogf: UInt8 { UInt8(rawValue >> 10) }
    public var ocf: UInt16 { rawValue & 0x03FF }

    /// Opcode 0x0000: no command; events with it only update the command credits (Vol 4 Part E 7.7.14).
    public static let noOperation = HCIOpcode(rawValue: 0x0000)
    // Link Control (OGF 0x01), Vol 4 Part E 7.1
    public static let disconnect = HCIOpcode(ogf: 0x01, ocf: 0x0006)
    public static let readRemoteVersionInformation = HCIOpcode(ogf: 0x01, ocf: 0x001D)
    // Controller & Baseband (OGF 0x03), 7.3
    public static let setEventMask = HCIOpcode(ogf: 0x03, ocf: 0x0001)
    public static let reset = HCIOpcode(ogf: 0x03, ocf: 0x0003)
    public static let writeLEHostSupport = HCIOpcode(ogf: 0x03, ocf: 0x006D)
    public static let setEventMaskPage2 = HCIOpcode(ogf: 0x03, ocf: 0x0063)
    // Informational (OGF 0x04), 7.4
    public static let readLocalVersionInformation = HCIOpcode(ogf: 0x04, ocf: 0x0001)
    public static let readLocalSupportedCommands = HCIOpcode(ogf: 0x04, ocf: 0x0002)
    public static let readLocalSupportedFeatures = HCIOpcode(ogf: 0x04, ocf: 0x0003)
    public static let readBufferSize = HCIOpcode(ogf: 0x04, ocf: 0x0005)
    public static let readBDADDR = HCIOpcode(ogf: 0x04, ocf: 0x0009)
    // LE Controller (OGF 0x08), 7.8
    public static let leSetEventMask = HCIOpcode(ogf: 0x08, ocf: 0x0001)
    public static let leReadBufferSize = HCIOpcode(ogf: 0x08, ocf: 0x0002)
    public static let leReadLocalSupportedFeatures = HCIOpcode(ogf: 0x08, ocf: 0x0003)
    public static let leSetRandomAddress = HCIOpcode(ogf: 0x08, ocf: 0x0005)
    public static let leSetAdvertisingParameters = HCIOpcode(ogf: 0x08, ocf: 0x0006)
    public static let leSetAdvertisingData = HCIOpcode(ogf: 0x08, ocf: 0x0008)
    public static let leSetAdvertisingEnable = HCIOpcode(ogf: 0x08, ocf: 0x000A)
    public static let leSetScanParameters = HCIOpcode(ogf: 0x08, ocf: 0x000B)
    public static let leSetScanEnable = HCIOpcode(ogf: 0x08, ocf: 0x000C)
    public static let leCreateConnection = HCIOpcode(ogf: 0x08, ocf: 0x000D)
    public static let leCreateConnectionCancel = HCIOpcode(ogf: 0x08, ocf: 0x000E)
    public static let leConnectionUpdate = HCIOpcode(ogf: 0x08, ocf: 0x0013)
    public static let leReadRemoteFeatures = HCIOpcode(ogf: 0x08, ocf: 0x0016)
    public static let leEncrypt = HCIOpcode(ogf: 0x08, ocf: 0x0017)
    public static let leRand = HCIOpcode(ogf: 0x08, ocf: 0x0018)
    public static let leEnableEncryption = HCIOpcode(ogf: 0x08, ocf: 0x0019)
    public static let leLongTermKeyRequestReply = HCIOpcode(ogf: 0x08, ocf: 0x001A)
    public static let leLongTermKeyRequestNegativeReply = HCIOpcode(ogf: 0x08, ocf: 0x001B)
    public static let leRemoteConnectionParameterRequestReply = HCIOpcode(ogf: 0x08, ocf: 0x0020)
    public static let leRemoteConnectionParameterRequestNegativeReply = HCIOpcode(ogf: 0x08, ocf: 0x0021)
    public static let leSetDataLength = HCIOpcode(ogf: 0x08, ocf: 0x0022)
    public static let leSetExtendedScanParameters = HCIOpcode(ogf: 0x08, ocf: 0x0041)
    public static let leSetExtendedScanEnable = HCIOpcode(ogf: 0x08, ocf: 0x0042)
    public static let leExtendedCreateConnection = HCIOpcode(ogf: 0x08, ocf: 0x0043)
    public static let leReadBufferSizeV2 = HCIOpcode(ogf: 0x08, ocf: 0x0060)

    private static let names: [UInt16: String] = [
        0x0000: "NOP",
        disconnect.rawValue: "HCI_Disconnect",
        readRemoteVersionInformation.rawValue: "HCI_Read_Remote_Version_Information",
        setEventMask.rawValue: "HCI_Set_Event_Mask",
        reset.rawValue: "HCI_Reset",
        writeLEHostSupport.rawValue: "HCI_Write_LE_Host_Support",
        setEventMaskPage2.rawValue: "HCI_Set_Event_Mask_Page_2",
        readLocalVersionInformation.rawValue: "HCI_Read_Local_Version_Information",
        readLocalSupportedCommands.rawValue: "HCI_Read_Local_Supported_Commands",
        readLocalSupportedFeatures.rawValue: "HCI_Read_Local_Supported_Features",
        readBufferSize.rawValue: "HCI_Read_Buffer_Size",
        readBDADDR.rawValue: "HCI_Read_BD_ADDR",
        leSetEventMask.rawValue: "HCI_LE_Set_Event_Mask",
        leReadBufferSize.rawValue: "HCI_LE_Read_Buffer_Size",
        leReadLocalSupportedFeatures.rawValue: "HCI_LE_Read_Local_Supported_Features",
        leSetRandomAddress.rawValue: "HCI_LE_Set_Random_Address",
        leSetAdvertisingParameters.rawValue: "HCI_LE_Set_Advertising_Parameters",
        leSetAdvertisingData.rawValue: "HCI_LE_Set_Advertising_Data",
        leSetAdvertisingEnable.rawValue: "HCI_LE_Set_Advertising_Enable",
        leSetScanParameters.rawValue: "HCI_LE_Set_Scan_Parameters",
        leSetScanEnable.rawValue: "HCI_LE_Set_Scan_Enable",
        leCreateConnection.rawValue: "HCI_LE_Create_Connection",
        leCreateConnectionCancel.rawValue: "HCI_LE_Create_Connection_Cancel",
        leConnectionUpdate.rawValue: "HCI_LE_Connection_Update",
        leReadRemoteFeatures.rawValue: "HCI_LE_Read_Remote_Features",
        leEncrypt.rawValue: "HCI_LE_Encrypt",
        leRand.rawValue: "HCI_LE_Rand",
        leEnableEncryption.rawValue: "HCI_LE_Enable_Encryption",
        leLongTermKeyRequestReply.rawValue: "HCI_LE_Long_Term_Key_Request_Reply",
        leLongTermKeyRequestNegativeReply.rawValue: "HCI_LE_Long_Term_Key_Request_Negative_Reply",
        leRemoteConnectionParameterRequestReply.rawValue: "HCI_LE_Remote_Connection_Parameter_Request_Reply",
        leRemoteConnectionParameterRequestNegativeReply.rawValue: "HCI_LE_Remote_Connection_Parameter_Request_Negative_Reply",
        leSetDataLength.rawValue: "HCI_LE_Set_Data_Length",
        leSetExtendedScanParameters.rawValue: "HCI_LE_Set_Extended_Scan_Parameters",
        leSetExtendedScanEnable.rawValue: "HCI_LE_Set_Extended_Scan_Enable",
        leExtendedCreateConnection.rawValue: "HCI_LE_Extended_Create_Connection",
        leReadBufferSizeV2.rawValue: "HCI_LE_Read_Buffer_Size_v2",
    ]

    /// Spec name for logs, or `opcode 0x....(ogf/ocf)` when unknown.
    public var name: String {
        if let n = Self.names[rawValue] { return n }
        return "opcode 0x\(hex4(rawValue)) (OGF 0x\(String(ogf, radix: 16)) OCF 0x\(String(ocf, radix: 16)))"
    }
    public var description: String { name }
}

func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
}

func hex2(_ v: UInt8) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return s.count == 1 ? "0" + s : s
}

/// HCI status / error codes, Core v5.4 Vol 1 Part F 1.3 (list of error codes). Open: unknown codes survive.
public struct HCIStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let success = HCIStatus(rawValue: 0x00)
    public static let unknownHCICommand = HCIStatus(rawValue: 0x01)
    public static let unknownConnectionIdentifier = HCIStatus(rawValue: 0x02)
    public static let hardwareFailure = HCIStatus(rawValue: 0x03)
    public static let pageTimeout = HCIStatus(rawValue: 0x04)
    public static let authenticationFailure = HCIStatus(rawValue: 0x05)
    public static let pinOrKeyMissing = HCIStatus(rawValue: 0x06)
    public static let memoryCapacityExceeded = HCIStatus(rawValue: 0x07)
    public static let connectionTimeout = HCIStatus(rawValue: 0x08)
    public static let connectionLimitExceeded = HCIStatus(rawValue: 0x09)
    public static let synchronousConnectionLimitExceeded = HCIStatus(rawValue: 0x0A)
    public static let connectionAlreadyExists = HCIStatus(rawValue: 0x0B)
    public static let commandDisallowed = HCIStatus(rawValue: 0x0C)
    public static let rejectedLimitedResources = HCIStatus(rawValue: 0x0D)
    public static let rejectedSecurityReasons = HCIStatus(rawValue: 0x0E)
    public static let rejectedUnacceptableBDADDR = HCIStatus(rawValue: 0x0F)
    public static let connectionAcceptTimeoutExceeded = HCIStatus(rawValue: 0x10)
    public static let unsupportedFeatureOrParameterValue = HCIStatus(rawValue: 0x11)
    public static let invalidHCICommandParameters = HCIStatus(rawValue: 0x12)
    public static let remoteUserTerminated = HCIStatus(rawValue: 0x13)
    public static let remoteLowResources = HCIStatus(rawValue: 0x14)
    public static let remotePowerOff = HCIStatus(rawValue: 0x15)
    public static let connectionTerminatedByLocalHost = HCIStatus(rawValue: 0x16)
    public static let repeatedAttempts = HCIStatus(rawValue: 0x17)
    public static let pairingNotAllowed = HCIStatus(rawValue: 0x18)
    public static let unknownLMPPDU = HCIStatus(rawValue: 0x19)
    public static let unsupportedRemoteFeature = HCIStatus(rawValue: 0x1A)
    public static let scoOffsetRejected = HCIStatus(rawValue: 0x1B)
    public static let scoIntervalRejected = HCIStatus(rawValue: 0x1C)
    public static let scoAirModeRejected = HCIStatus(rawValue: 0x1D)
    public static let invalidLMPParameters = HCIStatus(rawValue: 0x1E)
    public static let unspecifiedError = HCIStatus(rawValue: 0x1F)
    public static let unsupportedLMPParameterValue = HCIStatus(rawValue: 0x20)
    public static let roleChangeNotAllowed = HCIStatus(rawValue: 0x21)
    public static let lmpResponseTimeout = HCIStatus(rawValue: 0x22)
    public static let lmpErrorTransactionCollision = HCIStatus(rawValue: 0x23)
    public static let lmpPDUNotAllowed = HCIStatus(rawValue: 0x24)
    public static let encryptionModeNotAcceptable = HCIStatus(rawValue: 0x25)
    public static let linkKeyCannotBeChanged = HCIStatus(rawValue: 0x26)
    public static let requestedQoSNotSupported = HCIStatus(rawValue: 0x27)
    public static let instantPassed = HCIStatus(rawValue: 0x28)
    public static let pairingWithUnitKeyNotSupported = HCIStatus(rawValue: 0x29)
    public static let differentTransactionCollision = HCIStatus(rawValue: 0x2A)
    public static let qosUnacceptableParameter = HCIStatus(rawValue: 0x2C)
    public static let qosRejected = HCIStatus(rawValue: 0x2D)
    public static let channelClassificationNotSupported = HCIStatus(rawValue: 0x2E)
    public static let insufficientSecurity = HCIStatus(rawValue: 0x2F)
    public static let parameterOutOfMandatoryRange = HCIStatus(rawValue: 0x30)
    public static let roleSwitchPending = HCIStatus(rawValue: 0x32)
    public static let reservedSlotViolation = HCIStatus(rawValue: 0x34)
    public static let roleSwitchFailed = HCIStatus(rawValue: 0x35)
    public static let extendedInquiryResponseTooLarge = HCIStatus(rawValue: 0x36)
    public static let secureSimplePairingNotSupportedByHost = HCIStatus(rawValue: 0x37)
    public static let hostBusyPairing = HCIStatus(rawValue: 0x38)
    public static let connectionRejectedNoSuitableChannelFound = HCIStatus(rawValue: 0x39)
    public static let controllerBusy = HCIStatus(rawValue: 0x3A)
    public static let unacceptableConnectionParameters = HCIStatus(rawValue: 0x3B)
    public static let advertisingTimeout = HCIStatus(rawValue: 0x3C)
    public static let connectionTerminatedMICFailure = HCIStatus(rawValue: 0x3D)
    public static let connectionFailedToBeEstablished = HCIStatus(rawValue: 0x3E)
    public static let macConnectionFailed = HCIStatus(rawValue: 0x3F)
    public static let coarseClockAdjustmentRejected = HCIStatus(rawValue: 0x40)
    public static let type0SubmapNotDefined = HCIStatus(rawValue: 0x41)
    public static let unknownAdvertisingIdentifier = HCIStatus(rawValue: 0x42)
    public static let limitReached = HCIStatus(rawValue: 0x43)
    public static let operationCancelledByHost = HCIStatus(rawValue: 0x44)
    public static let packetTooLong = HCIStatus(rawValue: 0x45)
    public static let tooLate = HCIStatus(rawValue: 0x46)
    public static let tooEarly = HCIStatus(rawValue: 0x47)

    private static let names: [UInt8: String] = [
        0x00: "Success", 0x01: "Unknown HCI Command", 0x02: "Unknown Connection Identifier",
        0x03: "Hardware Failure", 0x04: "Page Timeout", 0x05: "Authentication Failure",
        0x06: "PIN or Key Missing", 0x07: "Memory Capacity Exceeded", 0x08: "Connection Timeout",
        0x09: "Connection Limit Exceeded", 0x0A: "Synchronous Connection Limit To A Device Exceeded",
        0x0B: "Connection Already Exists", 0x0C: "Command Disallowed",
        0x0D: "Connection Rejected due to Limited Resources", 0x0E: "Connection Rejected Due To Security Reasons",
        0x0F: "Connection Rejected due to Unacceptable BD_ADDR", 0x10: "Connection Accept Timeout Exceeded",
        0x11: "Unsupported Feature or Parameter Value", 0x12: "Invalid HCI Command Parameters",
        0x13: "Remote User Terminated Connection",
        0x14: "Remote Device Terminated Connection due to Low Resources",
        0x15: "Remote Device Terminated Connection due to Power Off",
        0x16: "Connection Terminated By Local Host", 0x17: "Repeated Attempts", 0x18: "Pairing Not Allowed",
        0x19: "Unknown LMP PDU", 0x1A: "Unsupported Remote Feature", 0x1B: "SCO Offset Rejected",
        0x1C: "SCO Interval Rejected", 0x1D: "SCO Air Mode Rejected", 0x1E: "Invalid LMP Parameters / Invalid LL Parameters",
        0x1F: "Unspecified Error", 0x20: "Unsupported LMP Parameter Value / Unsupported LL Parameter Value",
        0x21: "Role Change Not Allowed", 0x22: "LMP Response Timeout / LL Response Timeout",
        0x23: "LMP Error Transaction Collision / LL Procedure Collision", 0x24: "LMP PDU Not Allowed",
        0x25: "Encryption Mode Not Acceptable", 0x26: "Link Key cannot be Changed",
        0x27: "Requested QoS Not Supported", 0x28: "Instant Passed", 0x29: "Pairing With Unit Key Not Supported",
        0x2A: "Different Transaction Collision", 0x2C: "QoS Unacceptable Parameter", 0x2D: "QoS Rejected",
        0x2E: "Channel Classification Not Supported", 0x2F: "Insufficient Security",
        0x30: "Parameter Out Of Mandatory Range", 0x32: "Role Switch Pending", 0x34: "Reserved Slot Violation",
        0x35: "Role Switch Failed", 0x36: "Extended Inquiry Response Too Large",
        0x37: "Secure Simple Pairing Not Supported By Host", 0x38: "Host Busy - Pairing",
        0x39: "Connection Rejected due to No Suitable Channel Found", 0x3A: "Controller Busy",
        0x3B: "Unacceptable Connection Parameters", 0x3C: "Advertising Timeout",
        0x3D: "Connection Terminated due to MIC Failure", 0x3E: "Connection Failed to be Established",
        0x3F: "MAC Connection Failed", 0x40: "Coarse Clock Adjustment Rejected but Will Try to Adjust Using Clock Dragging",
        0x41: "Type0 Submap Not Defined", 0x42: "Unknown Advertising Identifier", 0x43: "Limit Reached",
        0x44: "Operation Cancelled by Host", 0x45: "Packet Too Long", 0x46: "Too Late", 0x47: "Too Early",
    ]

    public var name: String { Self.names[rawValue] ?? "Unknown error 0x\(hex2(rawValue))" }
    public var description: String { "\(name) (0x\(hex2(rawValue)))" }
}
