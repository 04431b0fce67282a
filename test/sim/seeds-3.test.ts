// Seeds 501 to 750 of the simulator's sweep (see sweep-test.ts).
import { sweepTest } from './sweep-test.js'

sweepTest(501, 250)
