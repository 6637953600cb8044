// The Linux HCI user channel (HCI_CHANNEL_USER) through libbluetooth's headers (Debian libbluetooth-dev).
// Only the socket structures and constants are used; nothing of libbluetooth is linked.
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <bluetooth/bluetooth.h>
#include <bluetooth/hci.h>

static inline unsigned long iomt_HCIDEVDOWN(void) { return HCIDEVDOWN; }
static inline unsigned long iomt_HCIGETDEVINFO(void) { return HCIGETDEVINFO; }
