// Seeds 1 to 250 of the simulator's sweep (see sweep-test.ts).
import { sweepTest } from './sweep-test.js'

sweepTest(1, 250)
