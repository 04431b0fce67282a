// Seeds 251 to 500 of the simulator's sweep (see sweep-test.ts).
import { sweepTest } from './sweep-test.js'

sweepTest(251, 250)
