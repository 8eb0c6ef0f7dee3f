"""The serial link to the hand/arm microcontroller: host side on pyserial, protocol codec, and the
C99 firmware library + emulator under firmware/ (built by the top-level CMakeLists.txt)."""
