// Jest gives each test file a copy of process.env, so assignments never reach setenv(3).
// PKCS#11 modules read their environment natively (SoftHSM2 reads SOFTHSM2_CONF in C_Initialize),
// so tests run with the real environment object, as the server does.
const { TestEnvironment } = require('jest-environment-node');

class RealEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    this.global.process.env = process.env;
  }
}

module.exports = RealEnvironment;
