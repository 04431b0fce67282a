// Seeds 751 to 1000 of the simulator's sweep (see sweep-test.ts).
import { sweepTest } from './sweep-test.js'

sweepTest(751, 250)
